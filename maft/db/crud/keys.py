"""Data access: API keys."""

from __future__ import annotations

import contextlib
import uuid

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from maft import apikeys
from maft.db.models import ApiKey, utcnow
from maft.exceptions import NotFoundError


def create_api_key(db: Session, *, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored."""
    plaintext, prefix = apikeys.new_key()
    key = ApiKey(name=name, prefix=prefix, key_hash=apikeys.hash_key(plaintext),
                 scopes=apikeys.check_scopes(scopes))
    db.add(key)
    db.flush()
    return key, plaintext


def authenticate(db: Session, *, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext`, or None (unknown, malformed or revoked)."""
    prefix = apikeys.prefix_of(plaintext)
    if prefix is None:
        return None
    key = db.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None or not apikeys.matches(plaintext, key.key_hash):
        return None
    return key


def live_api_key(db: Session, *, key_id: uuid.UUID) -> ApiKey | None:
    """The key with this id unless it is unknown or revoked."""
    key = db.get(ApiKey, key_id)
    return key if key is not None and key.revoked_at is None else None


def list_api_keys(db: Session) -> list[ApiKey]:
    """All keys, newest first."""
    return list(db.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))


def revoke_api_key(db: Session, *, key: str) -> ApiKey:
    """Revoke a key given by id or prefix; NotFoundError if no such key."""
    query = select(ApiKey).where(ApiKey.prefix == key)
    with contextlib.suppress(ValueError):
        query = select(ApiKey).where(or_(ApiKey.prefix == key, ApiKey.id == uuid.UUID(key)))
    found = db.scalar(query)
    if found is None:
        raise NotFoundError("api key", key)
    found.revoked_at = found.revoked_at or utcnow()
    return found
