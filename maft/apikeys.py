"""API key format, hashing and scopes. Keys are random, so a plain SHA-256 is a sound hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# query: ask, and read and label one's own debates. label: a trusted labeller, who reads and
# labels every debate and whose labels count as ground truth in training. admin: everything.
SCOPES = ("query", "label", "admin")
IMPLIED = {"admin": {"query", "label", "admin"}, "label": {"query", "label"},
           "query": {"query"}}
KEY_PREFIX = "maft"


def new_key() -> tuple[str, str]:
    """A fresh (plaintext key, lookup prefix) pair: `maft_<prefix>_<secret>`."""
    prefix = secrets.token_hex(6)
    return f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def hash_key(key: str) -> str:
    """Hex SHA-256 of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str, key_hash: str) -> bool:
    """Constant-time comparison of a key with a stored hash."""
    return hmac.compare_digest(hash_key(key), key_hash)


def grants(scopes: list[str], needed: str) -> bool:
    """Whether `scopes` allow `needed`; admin includes every scope, label includes query."""
    return any(needed in IMPLIED.get(scope, {scope}) for scope in scopes)


def check_scopes(scopes: list[str]) -> list[str]:
    """Validated, de-duplicated scopes; ValueError for an unknown one."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, got {scopes}")
    return sorted(set(scopes))
