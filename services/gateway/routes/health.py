"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session

from maft.db import crud
from maft.debate import Roster
from maft.exceptions import MaftError
from services.gateway.deps import InferenceDep, SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def _roster(db: Session) -> Roster:
    db.execute(text("SELECT 1"))
    return crud.roster_of(crud.active_society(db))


@router.get("/readyz", responses={503: {"description": "a dependency is not ready"}})
async def readyz(store: StoreDep, inference: InferenceDep, settings: SettingsDep) -> JSONResponse:
    """Database reachable, inference reachable, every adapter of the active society loadable."""
    checks: dict[str, str] = {}
    roster = None
    try:
        roster = await store.call(lambda db: _roster(db))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"failed: {exc}"
    checks["inference"] = "ok" if await inference.healthy() else (
        f"failed: {settings.inference_url}/health does not answer 200")
    if roster is not None and checks["inference"] == "ok":
        checks["society"] = await _check_society(inference, roster, settings.readiness_timeout_s)
    ready = all(v == "ok" for v in checks.values()) and "society" in checks
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


async def _check_society(inference: InferenceDep, roster: Roster, timeout: float) -> str:
    names = sorted({*roster.generators, *roster.critics, roster.summarizer})
    try:
        async with asyncio.timeout(timeout):
            for name in names:
                await inference.ensure_loadable(name)
    except (MaftError, TimeoutError) as exc:
        return f"failed (society v{roster.society_version}): {exc or 'timed out'}"
    return "ok"
