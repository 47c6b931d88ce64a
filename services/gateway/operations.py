"""What the API routes and the console both do: label a debate, start a training run, activate a
society. One implementation, two front ends (JSON and HTML)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

from sqlalchemy.orm import Session

from maft.db import crud
from maft.db.models import Feedback, Society
from maft.debate import Roster
from maft.enums import RunStatus, SocietyStatus
from maft.exceptions import ConflictError, InferenceError, QueueUnavailableError, SocietyError
from maft.inference_client import InferenceClient
from maft.run_options import RunOptions
from services.gateway import views
from services.gateway.debates import Store, stored_answer
from services.gateway.schemas import SocietyList, SocietyOut
from services.gateway.training_queue import TrainingQueue
from services.gateway.training_schemas import TrainingRunOut


def spawn(jobs: set[asyncio.Task[Any]], work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run `work` in the background, keeping a reference until it ends (asyncio keeps none)."""
    job = asyncio.create_task(work)
    jobs.add(job)
    job.add_done_callback(jobs.discard)
    return job


def _label(db: Session, *, debate_id: uuid.UUID, correct_answer: object, note: str | None,
           api_key_id: uuid.UUID | None, owner: uuid.UUID | None) -> Feedback:
    debate = crud.get_debate(db, debate_id=debate_id, owner=owner)
    answer = stored_answer(views.task_of(debate.task), correct_answer)
    return crud.add_feedback(db, debate_id=debate_id, correct_answer=answer, note=note,
                             api_key_id=api_key_id, owner=owner)


async def record_feedback(store: Store, *, debate_id: uuid.UUID, correct_answer: object,
                          note: str | None, api_key_id: uuid.UUID | None,
                          owner: uuid.UUID | None) -> Feedback:
    """Store the correct answer of a debate (normalised by its task) as a label; `owner`: a
    query key labels only its own debates. Training trusts it when the key is a trusted
    labeller (scope label or admin)."""
    return await store.call(_label, debate_id=debate_id, correct_answer=correct_answer,
                            note=note, api_key_id=api_key_id, owner=owner)


def _queue(db: Session, *, options: RunOptions) -> TrainingRunOut:
    run = crud.queue_run(db, options=options.model_dump(mode="json", exclude_none=True),
                         trigger="api")
    return TrainingRunOut.from_row(run)


def _fail(db: Session, *, run_id: uuid.UUID, error: str) -> None:
    crud.finish_run(db, run=crud.get_run(db, run_id=run_id), status=RunStatus.FAILED,
                    error=error)


async def start_training_run(store: Store, queue: TrainingQueue, options: RunOptions
                             ) -> TrainingRunOut:
    """Queue a run and hand it to a trainer worker; ConflictError while another run is live,
    QueueUnavailableError (the run is then recorded as failed) if the broker is down."""
    run = await store.call(_queue, options=options)
    try:
        await queue.enqueue_run(run.id)
    except QueueUnavailableError as exc:
        await store.call(_fail, run_id=run.id, error=str(exc))
        raise
    return run


def list_societies(db: Session) -> SocietyList:
    """Every society, newest first, and the active version."""
    active = crud.active_society(db).version
    rows = crud.list_societies(db)
    return SocietyList(active_version=active,
                       societies=[SocietyOut.from_row(s, active=active) for s in rows])


def rejection(db: Session, society: Society) -> str:
    """Why the gate rejected `society`, in figures when its run recorded them."""
    run = crud.find_run(db, run_id=society.training_run_id) if society.training_run_id else None
    scores = run.evaluation if run is not None else {}
    if "candidate" in scores and "active" in scores:
        return (f"accuracy {scores['candidate']['accuracy']:.3f} vs the then active "
                f"{scores['active']['accuracy']:.3f}")
    return (run.error or "no evaluation recorded") if run is not None else "no training run"


def _roster(db: Session, *, version: int, force: bool) -> Roster:
    society = crud.get_society(db, version=version)
    if society.status == SocietyStatus.CANDIDATE:
        raise ConflictError(f"society v{version} is the candidate of a training run in progress")
    if society.status == SocietyStatus.REJECTED and not force:
        raise ConflictError(
            f"society v{version} was rejected by its evaluation gate ({rejection(db, society)});"
            f" to activate it anyway pass force=true (CLI: maft adapters activate {version} "
            "--force)")
    try:
        return crud.roster_of(society)
    except SocietyError as exc:
        raise ConflictError(str(exc)) from None


def _activate(db: Session, *, version: int, force: bool, actor: str) -> SocietyList:
    reason = f"activated by {actor}" + (" (forced)" if force else "")
    crud.activate_society(db, version=version, reason=reason)
    return list_societies(db)


async def activate_society(store: Store, inference: InferenceClient, *, version: int,
                           force: bool, actor: str = "an admin") -> SocietyList:
    """Make society `version` serve debates once every adapter loads on the inference server;
    ConflictError for a candidate, a rejected society without `force`, or a broken one."""
    roster = await store.call(_roster, version=version, force=force)
    for name in sorted({*roster.generators, *roster.critics}):
        try:
            await inference.ensure_loadable(name)
        except InferenceError as exc:
            raise ConflictError(f"society v{version} not activated: {exc}") from None
    return await store.call(_activate, version=version, force=force, actor=actor)
