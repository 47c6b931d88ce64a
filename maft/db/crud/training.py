"""Data access: training runs, their steps, and the debates they learn from."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from maft import apikeys
from maft.db.crud.societies import active_society, record_society_metrics
from maft.db.models import ApiKey, CurationOutcome, Debate, TrainingRun, TrainingStep, utcnow
from maft.enums import DebateStatus, RunStatus, StepStatus
from maft.exceptions import ConflictError, NotFoundError
from maft.records import DebateRecord, TurnRecord

TRAINING_SOURCES = ("api", "chat", "console")  # never eval or experiment debates


def create_run(db: Session, *, options: dict[str, Any], trigger: str,
               base_society_version: int) -> TrainingRun:
    """A queued run holding the one-live-run lock; ConflictError if another run is live."""
    run = TrainingRun(options=options, trigger=trigger, status=RunStatus.QUEUED, active_lock=True,
                      base_society_version=base_society_version, heartbeat_at=utcnow())
    try:
        with db.begin_nested():
            db.add(run)
            db.flush()
    except IntegrityError:
        live = active_run(db)
        raise ConflictError(f"training run {live.id if live else '?'} is still "
                            f"{live.status if live else 'live'}; one run at a time") from None
    return run


def queue_run(db: Session, *, options: dict[str, Any], trigger: str) -> TrainingRun:
    """A queued run based on the active society, with its first step planned."""
    run = create_run(db, options=options, trigger=trigger,
                     base_society_version=active_society(db).version)
    add_steps(db, run=run, names=["curate"])
    return run


def active_run(db: Session) -> TrainingRun | None:
    """The queued or running run, if any."""
    return db.scalar(select(TrainingRun).where(TrainingRun.active_lock.is_(True)))


def get_run(db: Session, *, run_id: uuid.UUID, lock: bool = False) -> TrainingRun:
    """A run with its steps; NotFoundError if absent. `lock` takes a row lock (fan-in)."""
    query = select(TrainingRun).where(TrainingRun.id == run_id).options(
        selectinload(TrainingRun.steps))
    run = db.scalar(query.with_for_update() if lock else query)
    if run is None:
        raise NotFoundError("training run", run_id)
    return run


def find_run(db: Session, *, run_id: uuid.UUID) -> TrainingRun | None:
    """A run, or None if absent."""
    return db.get(TrainingRun, run_id)


def list_runs(db: Session, *, limit: int = 50, status: str | None = None) -> list[TrainingRun]:
    """Runs, newest first."""
    query = select(TrainingRun).options(selectinload(TrainingRun.steps))
    if status:
        query = query.where(TrainingRun.status == status)
    return list(db.scalars(query.order_by(TrainingRun.created_at.desc()).limit(limit)))


def last_run(db: Session) -> TrainingRun | None:
    """The newest run of any status."""
    return db.scalar(select(TrainingRun).order_by(TrainingRun.created_at.desc()).limit(1))


def finish_run(db: Session, *, run: TrainingRun, status: RunStatus,
               decision: str | None = None, error: str | None = None) -> None:
    """End a run (succeeded / skipped / failed) and release the one-live-run lock."""
    run.status, run.finished_at, run.active_lock = status, utcnow(), None
    run.decision = decision or run.decision
    run.error = error if error is not None else run.error


def add_steps(db: Session, *, run: TrainingRun, names: Sequence[str]) -> None:
    """Create the missing steps of a run (idempotent)."""
    have = {s.name for s in run.steps}
    for name in names:
        if name not in have:
            run.steps.append(TrainingStep(name=name, status=StepStatus.PENDING))
    db.flush()


def step(run: TrainingRun, name: str) -> TrainingStep:
    """A step of a loaded run by name."""
    found = next((s for s in run.steps if s.name == name), None)
    if found is None:
        raise NotFoundError("training step", f"{run.id}/{name}")
    return found


def stale_runs(db: Session, *, before: datetime) -> list[TrainingRun]:
    """Live runs whose worker is gone: the run's last heartbeat is older than `before`, or one
    of its running steps stopped beating (its worker died while others keep the run alive)."""
    stuck = select(TrainingStep.run_id).where(
        TrainingStep.status == StepStatus.RUNNING,
        func.coalesce(TrainingStep.heartbeat_at, TrainingStep.started_at) < before)
    return list(db.scalars(select(TrainingRun).where(
        TrainingRun.active_lock.is_(True),
        or_(TrainingRun.heartbeat_at < before, TrainingRun.id.in_(stuck)))))


def count_new_debates(db: Session, *, since: datetime | None, task: str | None = None,
                      society_version: int | None = None) -> int:
    """Completed, trainable debates created after `since`."""
    query = select(func.count()).select_from(Debate).where(
        Debate.status == DebateStatus.COMPLETED, Debate.source.in_(TRAINING_SOURCES))
    if since is not None:
        query = query.where(Debate.created_at > since)
    if task:
        query = query.where(Debate.task == task)
    if society_version is not None:
        query = query.where(Debate.society_version == society_version)
    return int(db.scalar(query) or 0)


def trusted_labellers(db: Session) -> set[uuid.UUID]:
    """Keys whose labels are ground truth under the `trusted` policy: `label` or `admin`."""
    rows = db.execute(select(ApiKey.id, ApiKey.scopes)).all()
    return {key for key, scopes in rows if apikeys.grants(list(scopes or []), "label")}


def _trusted(key: uuid.UUID | None, trusted: set[uuid.UUID] | None) -> bool:
    # No key: auth was disabled (the anonymous admin) or the product itself wrote it.
    return trusted is None or key is None or key in trusted


def _record(debate: Debate, trusted: set[uuid.UUID] | None) -> DebateRecord:
    turns = tuple(TurnRecord(r.round, r.agent_index, r.role, r.lora_name,
                             tuple(dict(m) for m in r.messages), r.text, r.parsed_answer,
                             r.finish_reason)
                  for r in debate.responses)
    labels = [f.correct_answer for f in debate.feedback if _trusted(f.api_key_id, trusted)]
    reference = debate.reference_answer if _trusted(debate.api_key_id, trusted) else None
    return DebateRecord(str(debate.id), debate.question, debate.task, debate.created_at,
                        debate.society_version, debate.agents, debate.rounds,
                        debate.final_answer, debate.consensus, reference,
                        labels[-1] if labels else None, turns)


def debate_records(db: Session, *, task: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, society_versions: Sequence[int] | None = None,
                   limit: int = 100_000, trusted_labels_only: bool = False
                   ) -> list[DebateRecord]:
    """Completed user debates (with turns and labels) for curation, oldest first.

    With `trusted_labels_only`, feedback and reference answers count only when the key that
    gave them holds `label` or `admin` (or none: auth disabled); others' labels are dropped.
    """
    query = select(Debate).where(Debate.status == DebateStatus.COMPLETED,
                                 Debate.source.in_(TRAINING_SOURCES)).options(
        selectinload(Debate.responses), selectinload(Debate.feedback))
    if task:
        query = query.where(Debate.task == task)
    if since:
        query = query.where(Debate.created_at >= since)
    if until:
        query = query.where(Debate.created_at < until)
    if society_versions:
        query = query.where(Debate.society_version.in_(list(society_versions)))
    trusted = trusted_labellers(db) if trusted_labels_only else None
    rows = db.scalars(query.order_by(Debate.created_at).limit(limit))
    return [_record(d, trusted) for d in rows]


def record_curation(db: Session, *, run_id: uuid.UUID, stats: dict[str, Any]) -> TrainingRun:
    """Store what curation built (per-agent dataset statistics) on the run."""
    run = get_run(db, run_id=run_id)
    run.dataset_stats = stats
    return run


def record_evaluation(db: Session, *, run_id: uuid.UUID, result: dict[str, Any]
                      ) -> TrainingRun:
    """Store the evaluation gate's figures and decision on the run (and the candidate's
    accuracy on its society, where the gate got that far)."""
    run = get_run(db, run_id=run_id)
    run.evaluation, run.decision = result, result.get("decision")
    candidate = result.get("candidate")
    if candidate and run.candidate_society_version is not None:
        figures = {k: candidate[k] for k in ("accuracy", "stderr", "n") if k in candidate}
        record_society_metrics(db, version=run.candidate_society_version,
                               metrics={"eval": {**figures, "source": result.get("source"),
                                                 "partial": result.get("partial", False)}})
    return run


def record_outcomes(db: Session, *, run_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """Store what curation made of each debate and response (replacing a retried step's)."""
    db.execute(delete(CurationOutcome).where(CurationOutcome.run_id == run_id))
    db.add_all(CurationOutcome(run_id=run_id, **{**row, "debate_id": uuid.UUID(
        str(row["debate_id"]))}) for row in rows)


def outcomes_of_debate(db: Session, *, debate_id: uuid.UUID) -> list[CurationOutcome]:
    """Every training run's outcomes for one debate, oldest run first."""
    return list(db.scalars(
        select(CurationOutcome).join(TrainingRun, TrainingRun.id == CurationOutcome.run_id)
        .where(CurationOutcome.debate_id == debate_id)
        .order_by(TrainingRun.created_at, CurationOutcome.id)))


def run_labels(db: Session, *, run_id: uuid.UUID) -> list[tuple[Debate, str | None, str | None]]:
    """The debates a run labelled (with their feedback), each with its label and source."""
    rows = db.execute(
        select(Debate, CurationOutcome.label, CurationOutcome.label_source)
        .join(CurationOutcome, CurationOutcome.debate_id == Debate.id)
        .where(CurationOutcome.run_id == run_id, CurationOutcome.label.is_not(None))
        .distinct().options(selectinload(Debate.feedback)))
    return [(debate, label, source) for debate, label, source in rows]
