"""/v1/adapters and /v1/societies (admin): adapter versions, the active society, activation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session

from maft.db import crud
from maft.debate import Roster
from maft.exceptions import ConflictError, InferenceError, SocietyError
from services.gateway.deps import AdminPrincipal, InferenceDep, StoreDep
from services.gateway.schemas import ErrorOut, SocietyOut

router = APIRouter(prefix="/v1", tags=["adapters"])


def _societies(db: Session) -> dict[str, Any]:
    active = crud.active_society(db).version
    rows = crud.list_societies(db)
    return {"active_version": active,
            "societies": [SocietyOut.from_row(s, active=active) for s in rows]}


@router.get("/adapters")
async def list_adapters(_: AdminPrincipal, store: StoreDep) -> dict[str, Any]:
    """Every society with its adapter versions and metrics, and which one serves debates."""
    return await store.call(_societies)


def _roster(db: Session, *, version: int) -> Roster:
    society = crud.get_society(db, version=version)
    if society.status == "candidate":
        raise ConflictError(f"society v{version} is the candidate of a training run in progress")
    try:
        return crud.roster_of(society)
    except SocietyError as exc:
        raise ConflictError(str(exc)) from None


def _activate(db: Session, *, version: int) -> dict[str, Any]:
    crud.activate_society(db, version=version, reason="activated by an admin")
    return _societies(db)


@router.post("/societies/{version}/activate",
             responses={c: {"model": ErrorOut} for c in (404, 409, 503)})
async def activate(version: int, _: AdminPrincipal, store: StoreDep,
                   inference: InferenceDep) -> dict[str, Any]:
    """Make society `version` serve debates (rollback = activate an earlier one).

    Every adapter must load on the inference server first; a broken society is never activated.
    """
    roster = await store.call(_roster, version=version)
    for name in sorted({*roster.generators, *roster.critics}):
        try:
            await inference.ensure_loadable(name)
        except InferenceError as exc:
            raise ConflictError(f"society v{version} not activated: {exc}") from None
    return await store.call(_activate, version=version)
