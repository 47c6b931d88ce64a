"""/v1/adapters and /v1/societies (admin): adapter versions, the active society, activation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy.orm import Session

from maft.db import crud
from maft.db.models import Society
from maft.debate import Roster
from maft.enums import SocietyStatus
from maft.exceptions import ConflictError, InferenceError, SocietyError
from services.gateway.deps import AdminPrincipal, InferenceDep, StoreDep
from services.gateway.schemas import ErrorOut, SocietyList, SocietyOut

router = APIRouter(prefix="/v1", tags=["adapters"])
MAX_VERSION = 2**31 - 1  # societies.version is a 32-bit INTEGER column


def _societies(db: Session) -> SocietyList:
    active = crud.active_society(db).version
    rows = crud.list_societies(db)
    return SocietyList(active_version=active,
                       societies=[SocietyOut.from_row(s, active=active) for s in rows])


@router.get("/adapters", response_model=SocietyList)
async def list_adapters(_: AdminPrincipal, store: StoreDep) -> SocietyList:
    """Every society with its adapter versions and metrics, and which one serves debates."""
    return await store.call(_societies)


def _rejection(db: Session, society: Society) -> str:
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
            f"society v{version} was rejected by its evaluation gate ({_rejection(db, society)});"
            f" to activate it anyway pass force=true (CLI: maft adapters activate {version} "
            "--force)")
    try:
        return crud.roster_of(society)
    except SocietyError as exc:
        raise ConflictError(str(exc)) from None


def _activate(db: Session, *, version: int, force: bool) -> SocietyList:
    reason = "activated by an admin" + (" (forced)" if force else "")
    crud.activate_society(db, version=version, reason=reason)
    return _societies(db)


@router.post("/societies/{version}/activate", response_model=SocietyList,
             responses={c: {"model": ErrorOut} for c in (404, 409, 422, 503)})
async def activate(version: Annotated[int, Path(ge=0, le=MAX_VERSION)], _: AdminPrincipal,
                   store: StoreDep, inference: InferenceDep, force: bool = False
                   ) -> SocietyList:
    """Make society `version` serve debates (rollback = activate an earlier one).

    Every adapter must load on the inference server first; a broken society is never activated.
    A society its evaluation gate rejected needs `force=true`.
    """
    roster = await store.call(_roster, version=version, force=force)
    for name in sorted({*roster.generators, *roster.critics}):
        try:
            await inference.ensure_loadable(name)
        except InferenceError as exc:
            raise ConflictError(f"society v{version} not activated: {exc}") from None
    return await store.call(_activate, version=version, force=force)
