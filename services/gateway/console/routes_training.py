"""Console (admin): training runs, their live progress, and starting one."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from maft.db import crud
from maft.enums import LIVE_RUN
from maft.exceptions import ConflictError, NotFoundError, QueueUnavailableError
from maft.run_options import RunOptions
from maft.tasks import task_names
from services.gateway import operations
from services.gateway.console.auth import AdminPostDep, AdminSessionDep, ConsoleSession
from services.gateway.console.pages import PREFIX, filled, render
from services.gateway.deps import StoreDep, TrainingQueueDep
from services.gateway.training_schemas import TrainingRunOut

router = APIRouter(prefix=f"{PREFIX}/runs", include_in_schema=False)
HYPER = ("max_steps", "epochs", "rank", "learning_rate")
NUMBERS = ("min_consensus", "w", "agents", "eval_size")


def _runs(db: Session) -> list[TrainingRunOut]:
    return [TrainingRunOut.from_row(r) for r in crud.list_runs(db, limit=50)]


def _page(request: Request, session: ConsoleSession, runs: list[TrainingRunOut], *,
          status: int = 200, error: str | None = None, values: dict[str, Any] | None = None
          ) -> Response:
    return render(request, "runs.html", session, status=status, runs=runs, error=error,
                  values=values or {}, tasks=task_names(), live=LIVE_RUN)


@router.get("", response_class=HTMLResponse)
async def run_list(request: Request, session: AdminSessionDep, store: StoreDep) -> Response:
    """Runs newest first (failures stand out), and the form that starts one."""
    return _page(request, session, await store.call(_runs))


def options_of(form: dict[str, Any]) -> RunOptions:
    """RunOptions from the start form (blank fields take the trainer's defaults)."""
    values = filled(form)
    options: dict[str, Any] = {k: values[k] for k in ("task",) if k in values}
    options.update({k: values[k] for k in NUMBERS if k in values and k != "eval_size"})
    options["hyperparameters"] = {k: values[k] for k in HYPER if k in values}
    options["eval"] = {"size": values["eval_size"]} if "eval_size" in values else {}
    options["use_ground_truth"] = "use_ground_truth" in values
    options["from_base"] = "from_base" in values
    return RunOptions.model_validate(options, strict=False)


@router.post("")
async def start(request: Request, session: AdminPostDep, store: StoreDep,
                queue: TrainingQueueDep) -> Response:
    """Start a run (as POST /v1/training-runs does) and open its page."""
    form = dict(await request.form())
    try:
        run = await operations.start_training_run(store, queue, options_of(form))
    except ValidationError as exc:
        error = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _page(request, session, await store.call(_runs), status=422, error=error,
                     values=form)
    except (ConflictError, QueueUnavailableError) as exc:
        status = 409 if isinstance(exc, ConflictError) else 503
        return _page(request, session, await store.call(_runs), status=status,
                     error=str(exc), values=form)
    return RedirectResponse(f"{PREFIX}/runs/{run.id}", status_code=303)


def _run(db: Session, *, run_id: str) -> dict[str, Any]:
    try:
        row = crud.get_run(db, run_id=uuid.UUID(run_id))
    except ValueError:
        raise NotFoundError("training run", run_id) from None
    return {"run": TrainingRunOut.from_row(row), "live": row.status in LIVE_RUN}


@router.get("/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str, session: AdminSessionDep,
                   store: StoreDep) -> Response:
    """One run: steps with live progress and ETA, datasets, losses, evaluation, errors."""
    return render(request, "run.html", session, **await store.call(_run, run_id=run_id))


@router.get("/{run_id}/progress", response_class=HTMLResponse)
async def run_progress(request: Request, run_id: str, session: AdminSessionDep,
                       store: StoreDep) -> Response:
    """The live part of a run's page (polled while the run is live)."""
    return render(request, "_run_live.html", session, **await store.call(_run, run_id=run_id))
