"""Data access: the lifecycle of a training run's steps, as the trainer's workers drive it.

Every function runs in the caller's transaction. Step names: `curate`, `train:<role>:<n>`,
`evaluate`, `publish`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from maft.db.crud.societies import (
    activate_society,
    add_candidate_society,
    get_society,
    reject_society,
)
from maft.db.crud.training import add_steps, finish_run, get_run, record_curation, step
from maft.db.models import TrainingRun, TrainingStep, utcnow
from maft.enums import FINISHED_STEP, LIVE_RUN, Decision, RunStatus, StepStatus
from maft.exceptions import NotFoundError

TRAIN_PREFIX = "train:"


def train_step_name(role: str, agent_index: int) -> str:
    """Step name of one agent's training."""
    return f"{TRAIN_PREFIX}{role}:{agent_index}"


def live_run(db: Session, *, run_id: uuid.UUID) -> TrainingRun | None:
    """The run if it is still queued or running (a retried task of an ended run does nothing)."""
    run = get_run(db, run_id=run_id)
    return run if run.status in LIVE_RUN else None


def begin_step(db: Session, *, run_id: uuid.UUID, name: str) -> bool:
    """Mark a step running (and the run alive); False if the run ended or the step is done."""
    run = live_run(db, run_id=run_id)
    if run is None:
        return False
    current = step(run, name)
    if current.status in FINISHED_STEP:
        return False
    now = utcnow()
    current.status, current.started_at, current.heartbeat_at = StepStatus.RUNNING, now, now
    current.attempts += 1
    run.status, run.heartbeat_at = RunStatus.RUNNING, now
    run.started_at = run.started_at or now
    return True


def end_step(db: Session, *, run: TrainingRun, name: str, status: StepStatus = StepStatus.DONE,
             detail: dict[str, Any] | None = None) -> None:
    """Mark a step finished (done, skipped or failed), merging `detail` into its detail."""
    current = step(run, name)
    current.status, current.progress, current.eta_s = status, 1.0, 0.0
    current.finished_at = run.heartbeat_at = utcnow()
    if detail:
        current.detail = {**current.detail, **detail}


def record_progress(db: Session, *, run_id: uuid.UUID, name: str, done: int, total: int,
                    eta_s: float | None, loss: float | None = None) -> None:
    """A running step's progress and ETA (and a heartbeat for it and its run)."""
    run = get_run(db, run_id=run_id)
    current = step(run, name)
    current.progress, current.eta_s = (done / total if total else 1.0), eta_s
    current.detail = {**current.detail, "done": done, "total": total,
                      **({"loss": round(loss, 4)} if loss is not None else {})}
    run.heartbeat_at = current.heartbeat_at = utcnow()


def beat(db: Session, *, run_id: uuid.UUID, step_name: str) -> None:
    """Record that the worker running `step_name` of a run is alive."""
    now = utcnow()
    db.execute(update(TrainingStep).where(TrainingStep.run_id == run_id,
                                          TrainingStep.name == step_name,
                                          TrainingStep.status == StepStatus.RUNNING)
               .values(heartbeat_at=now))
    db.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(heartbeat_at=now))


def claim_after_trains(db: Session, *, run_id: uuid.UUID, name: str) -> bool:
    """Fan-in: queue step `name` once every train step finished; True for exactly one caller
    (the run row is locked, so two finishing agents cannot both claim it)."""
    run = get_run(db, run_id=run_id, lock=True)
    nxt = step(run, name)
    if run.status not in LIVE_RUN or nxt.status != StepStatus.PENDING:
        return False
    trains = [s for s in run.steps if s.name.startswith(TRAIN_PREFIX)]
    if any(s.status not in FINISHED_STEP for s in trains):
        return False
    nxt.status = StepStatus.QUEUED
    return True


def unfinished_trains(db: Session, *, run_id: uuid.UUID) -> list[tuple[str, int]]:
    """(role, agent_index) of the train steps of a run that have not finished."""
    run = get_run(db, run_id=run_id)
    todo = [s.name.split(":") for s in run.steps
            if s.name.startswith(TRAIN_PREFIX) and s.status not in FINISHED_STEP]
    return [(role, int(n)) for _, role, n in todo]


def fail_run(db: Session, *, run_id: uuid.UUID, error: str) -> bool:
    """End a live run as failed: its running steps fail, its candidate society is rejected and
    the one-live-run lock is released. False if the run is gone or already ended."""
    try:
        run = get_run(db, run_id=run_id, lock=True)
    except NotFoundError:
        return False
    if run.status not in LIVE_RUN:
        return False
    for current in run.steps:
        if current.status in (StepStatus.RUNNING, StepStatus.QUEUED):
            current.status = StepStatus.FAILED
    if run.candidate_society_version is not None:
        reject_society(db, version=run.candidate_society_version, only_candidate=True)
    finish_run(db, run=run, status=RunStatus.FAILED, error=error[:4000])
    return True


def skip_run(db: Session, *, run_id: uuid.UUID, stats: dict[str, Any], reason: str) -> None:
    """End a run whose curation found too little data (its statistics say what there was)."""
    run = record_curation(db, run_id=run_id, stats=stats)
    end_step(db, run=run, name="curate", status=StepStatus.SKIPPED, detail={"reason": reason})
    finish_run(db, run=run, status=RunStatus.SKIPPED, decision=Decision.SKIPPED, error=reason)


def plan_run(db: Session, *, run_id: uuid.UUID, version: int, agents: int,
             stats: dict[str, Any], steps: list[str], detail: dict[str, Any]) -> int:
    """After curation: the candidate society (once, even when curation is retried), the
    remaining steps, and curate marked done. Returns the candidate's version."""
    run = record_curation(db, run_id=run_id, stats=stats)
    if run.candidate_society_version is None:
        base = get_society(db, version=run.base_society_version or 0)
        add_candidate_society(db, version=version, base=base, agents=agents,
                              training_run_id=run.id)
        run.candidate_society_version = version
    add_steps(db, run=run, names=steps)
    end_step(db, run=run, name="curate", detail=detail)
    return run.candidate_society_version


def conclude_run(db: Session, *, run_id: uuid.UUID) -> list[str]:
    """Publish the run's decision: flip the active-society pointer to the candidate (promote)
    or reject it, then end the run. The new society's lora_names (none when rejected)."""
    run = get_run(db, run_id=run_id, lock=True)
    version = run.candidate_society_version
    if version is None:
        raise NotFoundError("candidate society of training run", run_id)
    names: list[str] = []
    promote = run.decision == Decision.PROMOTE
    if promote:
        society = activate_society(db, version=version, reason=f"training run {run_id}")
        names = [a.lora_name for a in society.adapters]
    else:
        reject_society(db, version=version)
    end_step(db, run=run, name="publish", detail={"activated": promote})
    finish_run(db, run=run, status=RunStatus.SUCCEEDED)
    return names
