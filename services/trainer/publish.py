"""Step 4 of a run: flip the active-society pointer (one transaction) or reject the candidate."""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy.orm import Session

from maft.db import crud
from maft.db.models import Society
from maft.exceptions import InferenceError
from maft.inference_client import InferenceClient
from services.trainer.context import TrainerContext
from services.trainer.runs import begin_step, end_step, heartbeat

log = logging.getLogger(__name__)


def _flip(db: Session, *, run_id: uuid.UUID) -> list[str]:
    run = crud.get_run(db, run_id=run_id, lock=True)
    version = run.candidate_society_version
    assert version is not None
    names: list[str] = []
    if run.decision == "promote":
        society = crud.activate_society(db, version=version, reason=f"training run {run_id}")
        names = [a.lora_name for a in society.adapters]
    else:
        candidate = db.get(Society, version)
        if candidate is not None:
            candidate.status = "rejected"
    end_step(db, run, "publish", detail={"activated": run.decision == "promote"})
    crud.finish_run(db, run=run, status="succeeded")
    return names


async def prewarm(url: str, names: list[str], api_key: str | None = None) -> None:
    """Ask inference to load the new adapters now, so the next debate does not wait for it."""
    client = InferenceClient(url, timeout=120, api_key=api_key)
    try:
        for name in names:
            await client.ensure_loadable(name)
    finally:
        await client.aclose()


def publish_run(ctx: TrainerContext, run_id: uuid.UUID) -> None:
    """Promote or reject the candidate society and end the run."""
    if not begin_step(ctx, run_id, "publish"):
        return
    with heartbeat(ctx, run_id, "publish"):
        _publish(ctx, run_id)


def _publish(ctx: TrainerContext, run_id: uuid.UUID) -> None:
    names = ctx.call(_flip, run_id=run_id)
    if names:
        try:
            asyncio.run(prewarm(ctx.settings.inference_url, names, ctx.settings.inference_key))
        except InferenceError as exc:  # replicas also load on first use; this only saves time
            log.warning("prewarming adapters failed: %s", exc)
