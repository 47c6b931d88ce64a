"""Producer side of the training queue: the gateway enqueues runs by task name, never imports
the trainer."""

from __future__ import annotations

import uuid

from celery import Celery
from starlette.concurrency import run_in_threadpool

from maft import queue
from maft.exceptions import QueueUnavailableError
from services.gateway.settings import GatewaySettings


class TrainingQueue:
    """A Celery client created once at startup."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.url = settings.broker_url
        self.app = Celery("maft-gateway")
        self.app.conf.update(queue.celery_config(settings.broker_url, settings.home))

    def _send(self, run_id: uuid.UUID) -> None:
        try:
            self.app.send_task(queue.TASK_START_RUN, args=[str(run_id)],
                               queue=queue.TRAINING_QUEUE)
        except Exception as exc:  # kombu/redis raise many types for "broker unreachable"
            raise QueueUnavailableError(
                f"training queue at {self.url} is unavailable: {exc}") from exc

    async def enqueue_run(self, run_id: uuid.UUID) -> None:
        """Ask a trainer worker to start the run; QueueUnavailableError if the broker is down."""
        await run_in_threadpool(self._send, run_id)

    def close(self) -> None:
        """Release broker connections."""
        self.app.close()
