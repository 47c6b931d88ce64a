"""Run lifecycle shared by the steps: begin, heartbeats, progress, fan-in, failure, reaping,
auto-start. The state lives in the database (maft.db.crud); these wrap it in transactions."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from maft import queue
from maft.db import crud
from maft.db.models import utcnow
from maft.exceptions import ConflictError
from services.trainer.context import Next, TrainerContext

log = logging.getLogger(__name__)


def begin_step(ctx: TrainerContext, run_id: uuid.UUID, name: str) -> bool:
    """Mark a step running (and the run alive); False if the run ended or the step is done."""
    return ctx.call(crud.begin_step, run_id=run_id, name=name)


@contextmanager
def heartbeat(ctx: TrainerContext, run_id: uuid.UUID, name: str) -> Iterator[None]:
    """Beat for a running step from a background thread while the block runs, and reap runs
    whose workers stopped beating.

    Progress callbacks alone are not enough: one evaluation debate or one training step on a
    busy CPU can outlast the lease. A worker that dies stops beating, and the reaper fails the
    run even while other workers keep it alive.
    """
    every, stop = max(1.0, ctx.settings.run_lease_s / 4), threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                ctx.call(crud.beat, run_id=run_id, step_name=name)
                # Beat's reap task waits in the queue behind training tasks while the workers
                # are busy (-c 1): a busy worker reaps the steps of dead ones itself.
                reap_stale_runs(ctx)
            except Exception as exc:  # a DB blip must not kill the step; the next beat retries
                log.warning("heartbeat of %s/%s failed: %s", run_id, name, exc)

    thread = threading.Thread(target=loop, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Progress:
    """Writes a step's progress, ETA and the run's heartbeat, at most every `every` seconds."""

    def __init__(self, ctx: TrainerContext, run_id: uuid.UUID, name: str, every: float = 2.0):
        self.ctx, self.run_id, self.name, self.every = ctx, run_id, name, every
        self.start, self.last = time.monotonic(), 0.0

    def __call__(self, done: int, total: int, loss: float | None = None) -> None:
        """Record `done` of `total` units."""
        now = time.monotonic()
        if now - self.last < self.every and done < total:
            return
        self.last, elapsed = now, now - self.start
        eta = elapsed / done * (total - done) if done else None
        self.ctx.call(crud.record_progress, run_id=self.run_id, name=self.name, done=done,
                      total=total, eta_s=eta, loss=loss)


def fan_in(ctx: TrainerContext, run_id: uuid.UUID) -> list[Next]:
    """After an agent finished: the last one to finish enqueues evaluation (exactly once)."""
    if ctx.call(crud.claim_after_trains, run_id=run_id, name="evaluate"):
        return [(queue.TASK_EVALUATE, (str(run_id),))]
    return []


def fail_run(ctx: TrainerContext, run_id: uuid.UUID, error: str) -> None:
    """End a run as failed: the lock is released and its candidate never becomes active."""
    if ctx.call(crud.fail_run, run_id=run_id, error=error):
        log.error("training run %s failed: %s", run_id, error)


def reap_stale_runs(ctx: TrainerContext) -> list[uuid.UUID]:
    """Fail live runs whose worker stopped sending heartbeats (killed, crashed, lost), for the
    whole run or for one of its running steps."""
    lease = ctx.settings.run_lease_s
    stale = ctx.call(lambda db: [r.id for r in crud.stale_runs(
        db, before=utcnow() - timedelta(seconds=lease))])
    for run_id in stale:
        fail_run(ctx, run_id, f"worker lost: no heartbeat for {lease:.0f} s")
    return stale


def auto_retrain(ctx: TrainerContext) -> list[Next]:
    """Start a run when enough new debates arrived since the last run (if enabled)."""
    settings = ctx.settings
    if not settings.auto_retrain:
        return []
    with ctx.tx() as db:
        if crud.active_run(db) is not None:
            return []
        last = crud.last_run(db)
        active = crud.active_society(db).version
        fresh = crud.count_new_debates(db, since=last.created_at if last else None,
                                       society_version=active)
        if fresh < settings.auto_retrain_threshold:
            return []
        try:
            run = crud.queue_run(db, options={}, trigger="auto")
        except ConflictError:
            return []
    log.info("auto-retraining: %d new debates -> run %s", fresh, run.id)
    return [(queue.TASK_START_RUN, (str(run.id),))]
