"""Data access: societies, adapter versions and the active-society pointer."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from maft.db.models import ActiveSociety, AdapterVersion, Society, utcnow
from maft.debate import MAX_AGENTS, Roster
from maft.enums import AGENT_ROLES, Role, SocietyKind, SocietyStatus
from maft.exceptions import NotFoundError, SocietyError


def ensure_base_society(db: Session, *, base_model_name: str) -> None:
    """Record society v0 (the base model for every agent) and point at it if nothing is active."""
    if db.get(Society, 0) is None:
        try:
            with db.begin_nested():
                db.add(Society(version=0, kind=SocietyKind.BASE, status=SocietyStatus.PROMOTED,
                               base_model_name=base_model_name, agents=MAX_AGENTS))
        except IntegrityError:
            pass  # another process recorded it first
    if db.get(ActiveSociety, 1) is None:
        try:
            with db.begin_nested():
                db.add(ActiveSociety(id=1, version=0, reason="initial base society"))
        except IntegrityError:
            pass


def get_society(db: Session, *, version: int) -> Society:
    """A society with its adapters; NotFoundError if absent."""
    society = db.scalar(select(Society).where(Society.version == version)
                        .options(selectinload(Society.adapters)))
    if society is None:
        raise NotFoundError("society", f"v{version}")
    return society


def active_society(db: Session) -> Society:
    """The society the pointer names; SocietyError if none is recorded yet."""
    pointer = db.get(ActiveSociety, 1)
    if pointer is None:
        raise SocietyError("no active society recorded: run `maft db upgrade`")
    return get_society(db, version=pointer.version)


def roster_of(society: Society) -> Roster:
    """The debate roster of a society; SocietyError if its adapters are incomplete."""
    if society.kind == SocietyKind.BASE:
        return Roster.base(society.base_model_name, society.agents, society.version)
    by_role: dict[str, dict[int, str]] = {role: {} for role in AGENT_ROLES}
    for adapter in society.adapters:
        by_role[adapter.role][adapter.agent_index] = adapter.lora_name
    names = {}
    for role, found in by_role.items():
        if sorted(found) != list(range(society.agents)):
            raise SocietyError(f"society v{society.version} lacks {role} adapters "
                               f"(has agents {sorted(found)} of {society.agents})")
        names[role] = tuple(found[i] for i in range(society.agents))
    return Roster(society.version, names[Role.GENERATOR], names[Role.CRITIC],
                  society.base_model_name)


def add_society(db: Session, *, version: int, base_model_name: str, agents: int,
                adapters: list[AdapterVersion], status: SocietyStatus = SocietyStatus.CANDIDATE,
                parent_version: int | None = None,
                training_run_id: uuid.UUID | None = None) -> Society:
    """Record a society of adapters (not active until `activate_society`)."""
    society = Society(version=version, kind=SocietyKind.ADAPTERS, status=status, agents=agents,
                      base_model_name=base_model_name, parent_version=parent_version,
                      training_run_id=training_run_id)
    db.add(society)
    db.flush()
    for adapter in adapters:
        adapter.society_version = version
        db.add(adapter)
    db.flush()
    return society


def activate_society(db: Session, *, version: int, reason: str) -> Society:
    """Point debates at society `version` (one UPDATE, in the caller's transaction)."""
    society = get_society(db, version=version)
    roster_of(society)  # refuse an incomplete society
    pointer = db.get(ActiveSociety, 1, with_for_update=True)
    if pointer is None:
        db.add(ActiveSociety(id=1, version=version, reason=reason))
    else:
        pointer.version, pointer.reason, pointer.updated_at = version, reason, utcnow()
    if society.status == SocietyStatus.CANDIDATE:
        society.status = SocietyStatus.PROMOTED
    return society


def next_society_version(db: Session) -> int:
    """A society version never used before."""
    return int(db.scalar(select(func.max(Society.version))) or 0) + 1


def list_societies(db: Session) -> list[Society]:
    """Every society with its adapters, newest first."""
    return list(db.scalars(select(Society).options(selectinload(Society.adapters))
                           .order_by(Society.version.desc())))


def list_adapters(db: Session) -> list[AdapterVersion]:
    """Every adapter version, newest society first."""
    return list(db.scalars(select(AdapterVersion).order_by(
        AdapterVersion.society_version.desc(), AdapterVersion.role, AdapterVersion.agent_index)))


def reject_society(db: Session, *, version: int, only_candidate: bool = False) -> None:
    """Mark a society rejected (with `only_candidate`, only while it is still a candidate)."""
    society = db.get(Society, version)
    if society is None:
        return
    if not only_candidate or society.status == SocietyStatus.CANDIDATE:
        society.status = SocietyStatus.REJECTED


def record_society_metrics(db: Session, *, version: int, metrics: dict[str, Any]) -> None:
    """Merge `metrics` (evaluation, diversity...) into a society's metrics."""
    society = db.get(Society, version)
    if society is not None:
        society.metrics = {**society.metrics, **metrics}


def add_candidate_society(db: Session, *, version: int, base: Society, agents: int,
                          training_run_id: uuid.UUID) -> Society:
    """The (empty) candidate society a training run fills with adapters."""
    society = Society(version=version, kind=SocietyKind.ADAPTERS,
                      status=SocietyStatus.CANDIDATE, agents=agents,
                      base_model_name=base.base_model_name, parent_version=base.version,
                      training_run_id=training_run_id)
    db.add(society)
    db.flush()
    return society


def add_adapter_version(db: Session, *, lora_name: str, society_version: int, role: str,
                        agent_index: int, lora_path: str, parent_lora_name: str | None,
                        rank: int, metrics: dict[str, Any]) -> None:
    """Record a published adapter of a society (idempotent: a retried step adds nothing)."""
    if db.get(AdapterVersion, lora_name) is not None:
        return
    society = get_society(db, version=society_version)
    db.add(AdapterVersion(lora_name=lora_name, society_version=society_version, role=role,
                          agent_index=agent_index, lora_path=lora_path,
                          base_model_name=society.base_model_name,
                          parent_lora_name=parent_lora_name, rank=rank, metrics=metrics))
