"""Run lifecycle shared by the steps: heartbeats, progress, fan-in, failure, reaping, auto-start."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from maft import queue
from maft.db import crud
from maft.db.models import Society, TrainingRun, utcnow
from maft.exceptions import ConflictError, NotFoundError
from services.trainer.context import Next, TrainerContext

log = logging.getLogger(__name__)
TRAIN_PREFIX = "train:"


def train_step_name(role: str, agent_index: int) -> str:
    """Step name of one agent's training."""
    return f"{TRAIN_PREFIX}{role}:{agent_index}"


def live_run(db: Session, run_id: uuid.UUID) -> TrainingRun | None:
    """The run if it is still queued or running (a retried task of an ended run does nothing)."""
    run = crud.get_run(db, run_id=run_id)
    return run if run.status in crud.training.LIVE else None


def begin_step(ctx: TrainerContext, run_id: uuid.UUID, name: str) -> bool:
    """Mark a step running (and the run alive); False if the run ended or the step is done."""
    with ctx.tx() as db:
        run = live_run(db, run_id)
        if run is None:
            return False
        current = crud.step(run, name)
        if current.status in ("done", "skipped"):
            return False
        current.status, current.started_at = "running", utcnow()
        current.heartbeat_at = current.started_at
        current.attempts += 1
        run.status, run.heartbeat_at = "running", utcnow()
        run.started_at = run.started_at or utcnow()
    return True


def end_step(db: Session, run: TrainingRun, name: str, *, status: str = "done",
             detail: dict[str, Any] | None = None) -> None:
    """Mark a step finished."""
    current = crud.step(run, name)
    current.status, current.progress, current.eta_s = status, 1.0, 0.0
    current.finished_at, run.heartbeat_at = utcnow(), utcnow()
    if detail:
        current.detail = {**current.detail, **detail}


@contextmanager
def heartbeat(ctx: TrainerContext, run_id: uuid.UUID, name: str) -> Iterator[None]:
    """Beat for a running step from a background thread while the block runs.

    Progress callbacks alone are not enough: one evaluation debate or one training step on a
    busy CPU can outlast the lease. A worker that dies stops beating, and the reaper fails the
    run even while other workers keep it alive.
    """
    every, stop = max(1.0, ctx.settings.run_lease_s / 4), threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                ctx.call(crud.beat, run_id=run_id, step_name=name)
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
        with self.ctx.tx() as db:
            run = crud.get_run(db, run_id=self.run_id)
            current = crud.step(run, self.name)
            current.progress, current.eta_s = (done / total if total else 1.0), eta
            current.detail = {**current.detail, "done": done, "total": total,
                              **({"loss": round(loss, 4)} if loss is not None else {})}
            run.heartbeat_at = current.heartbeat_at = utcnow()


def fan_in(ctx: TrainerContext, run_id: uuid.UUID) -> list[Next]:
    """After an agent finished: the last one to finish enqueues evaluation (exactly once)."""
    with ctx.tx() as db:
        run = crud.get_run(db, run_id=run_id, lock=True)
        trains = [s for s in run.steps if s.name.startswith(TRAIN_PREFIX)]
        evaluate = crud.step(run, "evaluate")
        if run.status not in crud.training.LIVE or evaluate.status != "pending":
            return []
        if any(s.status not in ("done", "skipped") for s in trains):
            return []
        evaluate.status = "queued"
    return [(queue.TASK_EVALUATE, (str(run_id),))]


def fail_run(ctx: TrainerContext, run_id: uuid.UUID, error: str) -> None:
    """End a run as failed: the lock is released and its candidate never becomes active."""
    with ctx.tx() as db:
        try:
            run = crud.get_run(db, run_id=run_id, lock=True)
        except NotFoundError:
            return
        if run.status not in crud.training.LIVE:
            return
        for current in run.steps:
            if current.status in ("running", "queued"):
                current.status = "failed"
        if run.candidate_society_version is not None:
            society = db.get(Society, run.candidate_society_version)
            if society is not None and society.status == "candidate":
                society.status = "rejected"
        crud.finish_run(db, run=run, status="failed", error=error[:4000])
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
