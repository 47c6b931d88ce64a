"""The Celery app (created once) and its thin tasks: ids in, one plain function, next tasks out.

Run a worker:  celery -A services.trainer.worker worker -Q training -c 1
Run beat:      celery -A services.trainer.worker beat
"""

from __future__ import annotations

import logging
import uuid
from functools import cache
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init

from maft import queue
from services.trainer.context import Next, TrainerContext
from services.trainer.pipeline import curate, evaluate, publish, runs, train_agent
from services.trainer.settings import get_settings

log = logging.getLogger(__name__)


def make_app() -> Celery:
    """The trainer's Celery app, configured from the settings."""
    settings = get_settings()
    app = Celery("maft-trainer")
    app.conf.update(queue.celery_config(settings.broker_url, settings.home))
    app.conf.beat_schedule = {
        "auto-retrain": {"task": queue.TASK_AUTO_RETRAIN,
                         "schedule": settings.auto_retrain_interval_s},
        "reap-stale-runs": {"task": queue.TASK_REAP,
                            "schedule": max(10.0, settings.run_lease_s / 4)},
    }
    return app


app = make_app()


@cache
def context() -> TrainerContext:
    """One context (engine, store) per worker process."""
    return TrainerContext.from_settings(get_settings())


@worker_process_init.connect
def _fresh_context(**_: Any) -> None:
    context.cache_clear()  # never share a DB connection pool across a fork


def enqueue(steps: list[Next]) -> None:
    """Send the next tasks of a workflow to the training queue."""
    for name, args in steps:
        app.send_task(name, args=list(args), queue=queue.TRAINING_QUEUE)


class RunTask(Task):
    """A run step: when it fails for good, the run is marked failed (the society is untouched)."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        """Fail the run this task belonged to."""
        if args:
            runs.fail_run(context(), uuid.UUID(str(args[0])), f"{self.name}: {exc!r}")


@app.task(name=queue.TASK_START_RUN, base=RunTask)
def curate_task(run_id: str) -> None:
    """Curate per-agent datasets, then fan out one train task per agent."""
    enqueue(curate.start_run(context(), uuid.UUID(run_id)))


@app.task(name=queue.TASK_TRAIN_AGENT, base=RunTask)
def train_agent_task(run_id: str, role: str, agent_index: int) -> None:
    """Train one agent; the last one to finish enqueues the evaluation."""
    enqueue(train_agent.train_agent(context(), uuid.UUID(run_id), role, agent_index))


@app.task(name=queue.TASK_EVALUATE, base=RunTask)
def evaluate_task(run_id: str) -> None:
    """Evaluate candidate vs active society, then publish."""
    enqueue(evaluate.evaluate_run(context(), uuid.UUID(run_id)))


@app.task(name=queue.TASK_PUBLISH, base=RunTask)
def publish_task(run_id: str) -> None:
    """Promote (flip the pointer) or reject."""
    publish.publish_run(context(), uuid.UUID(run_id))


@app.task(name=queue.TASK_AUTO_RETRAIN)
def auto_retrain_task() -> None:
    """Beat: start a run when enough new debates have arrived."""
    enqueue(runs.auto_retrain(context()))


@app.task(name=queue.TASK_REAP)
def reap_task() -> None:
    """Beat: fail runs whose worker died."""
    runs.reap_stale_runs(context())
