"""/v1/training-runs (admin): start a self-improvement run, watch it, list runs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from maft.db import crud
from maft.enums import RunStatus
from maft.exceptions import NotFoundError
from maft.run_options import RunOptions
from services.gateway import operations
from services.gateway.deps import AdminPrincipal, StoreDep, TrainingQueueDep
from services.gateway.schemas import ErrorOut
from services.gateway.training_schemas import TrainingRunOut, TrainingRunPage

router = APIRouter(prefix="/v1/training-runs", tags=["training"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=TrainingRunOut,
             responses={c: {"model": ErrorOut} for c in (401, 403, 409, 422, 503)})
async def start_run(options: RunOptions, _: AdminPrincipal, store: StoreDep,
                    training_queue: TrainingQueueDep) -> TrainingRunOut:
    """Queue a run: curate -> train every agent -> evaluate -> publish. One run at a time."""
    return await operations.start_training_run(store, training_queue, options)


def _get(db: Session, *, run_id: str) -> TrainingRunOut:
    try:
        key = uuid.UUID(run_id)
    except ValueError:
        raise NotFoundError("training run", run_id) from None
    return TrainingRunOut.from_row(crud.get_run(db, run_id=key))


@router.get("/{run_id}", response_model=TrainingRunOut, responses={404: {"model": ErrorOut}})
async def get_run(run_id: str, _: AdminPrincipal, store: StoreDep) -> TrainingRunOut:
    """A run: status, per-step progress with ETA, dataset statistics, evaluation, decision."""
    return await store.call(_get, run_id=run_id)


@router.get("", response_model=TrainingRunPage)
async def list_runs(_: AdminPrincipal, store: StoreDep,
                    limit: Annotated[int, Query(ge=1, le=200)] = 20,
                    status_: Annotated[str | None, Query(
                        alias="status", pattern="^(" + "|".join(RunStatus) + ")$")] = None
                    ) -> dict[str, Any]:
    """Runs, newest first."""
    rows = await store.call(crud.list_runs, limit=limit, status=status_)
    return {"data": [TrainingRunOut.from_row(r) for r in rows]}
