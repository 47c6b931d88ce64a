"""/v1/adapters: adapter versions and which society is active (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session

from maft.db import crud
from services.gateway.deps import AdminPrincipal, StoreDep
from services.gateway.schemas import SocietyOut

router = APIRouter(prefix="/v1", tags=["adapters"])


def _societies(db: Session) -> dict[str, Any]:
    active = crud.active_society(db).version
    rows = crud.list_societies(db)
    return {"active_version": active,
            "societies": [SocietyOut.from_row(s, active=active) for s in rows]}


@router.get("/adapters")
async def list_adapters(_: AdminPrincipal, store: StoreDep) -> dict[str, Any]:
    """Every society with its adapter versions, and which one serves debates."""
    return await store.call(_societies)
