"""/v1/adapters and /v1/societies (admin): adapter versions, the active society, activation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.gateway import operations
from services.gateway.deps import AdminPrincipal, InferenceDep, StoreDep
from services.gateway.schemas import ErrorOut, SocietyList

router = APIRouter(prefix="/v1", tags=["adapters"])
MAX_VERSION = 2**31 - 1  # societies.version is a 32-bit INTEGER column


@router.get("/adapters", response_model=SocietyList)
async def list_adapters(_: AdminPrincipal, store: StoreDep) -> SocietyList:
    """Every society with its adapter versions and metrics, and which one serves debates."""
    return await store.call(operations.list_societies)


@router.post("/societies/{version}/activate", response_model=SocietyList,
             responses={c: {"model": ErrorOut} for c in (404, 409, 422, 503)})
async def activate(version: Annotated[int, Path(ge=0, le=MAX_VERSION)], _: AdminPrincipal,
                   store: StoreDep, inference: InferenceDep, force: bool = False
                   ) -> SocietyList:
    """Make society `version` serve debates (rollback = activate an earlier one).

    Every adapter must load on the inference server first; a broken society is never activated.
    A society its evaluation gate rejected needs `force=true`.
    """
    return await operations.activate_society(store, inference, version=version, force=force)
