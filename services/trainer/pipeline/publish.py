"""Step 4 of a run: flip the active-society pointer (one transaction) or reject the candidate."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

from maft.db import crud
from maft.exceptions import InferenceError
from maft.inference_client import InferenceClient
from services.trainer.context import TrainerContext
from services.trainer.pipeline.runs import begin_step, heartbeat

log = logging.getLogger(__name__)


async def prewarm(url: str, names: list[str], api_key: str | None = None,
                  adapter_store: Path | None = None) -> None:
    """Ask inference to load the new adapters now, so the next debate does not wait for it."""
    client = InferenceClient(url, timeout=120, api_key=api_key, adapter_store=adapter_store)
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
        names = ctx.call(crud.conclude_run, run_id=run_id)
        if names:
            try:
                asyncio.run(prewarm(ctx.settings.inference_url, names,
                                    ctx.settings.inference_key, ctx.settings.adapter_dir))
            except InferenceError as exc:  # replicas also load on first use; this saves time
                log.warning("prewarming adapters failed: %s", exc)
