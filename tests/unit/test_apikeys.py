"""API keys (maft/apikeys.py), plus the pure pagination-cursor helpers of maft/db/crud.py."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from maft import apikeys
from maft.db.crud import decode_cursor, encode_cursor
from maft.db.models import as_utc

# -- key format -------------------------------------------------------------------------------


def test_new_key_format() -> None:
    key, prefix = apikeys.new_key()
    match = re.fullmatch(r"maft_([0-9a-f]{12})_([A-Za-z0-9_-]{40,})", key)
    assert match, key
    assert match[1] == prefix
    assert apikeys.prefix_of(key) == prefix


def test_new_keys_are_unique() -> None:
    keys = [apikeys.new_key() for _ in range(50)]
    assert len({k for k, _ in keys}) == 50
    assert len({p for _, p in keys}) == 50


def test_prefix_of_secret_with_underscores() -> None:
    assert apikeys.prefix_of("maft_abc123_sec_ret_with_underscores") == "abc123"


@pytest.mark.parametrize(
    "bad",
    ["", "maft", "maft_", "maft__secret", "maft_abc_", "maft_abc", "other_abc_secret",
     "MAFT_abc_secret", "abc_secret", "sk-abcdef"],
)
def test_prefix_of_malformed(bad: str) -> None:
    assert apikeys.prefix_of(bad) is None


# -- hashing ----------------------------------------------------------------------------------


def test_hash_and_match() -> None:
    key, _ = apikeys.new_key()
    digest = apikeys.hash_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert key not in digest
    assert apikeys.matches(key, digest)
    assert not apikeys.matches(key + "x", digest)
    assert not apikeys.matches(key[:-1], digest)
    other, _ = apikeys.new_key()
    assert not apikeys.matches(other, digest)
    assert not apikeys.matches(key, "")


# -- scopes -----------------------------------------------------------------------------------


def test_grants() -> None:
    assert apikeys.grants(["query"], "query")
    assert not apikeys.grants(["query"], "admin")
    assert apikeys.grants(["admin"], "admin")
    assert apikeys.grants(["admin"], "query")  # admin includes query
    assert apikeys.grants(["query", "admin"], "admin")
    assert not apikeys.grants([], "query")


def test_label_is_a_trusted_query_scope() -> None:
    assert apikeys.grants(["label"], "query") and apikeys.grants(["label"], "label")
    assert apikeys.grants(["admin"], "label")
    assert not apikeys.grants(["query"], "label") and not apikeys.grants(["label"], "admin")


def test_check_scopes_normalises() -> None:
    assert apikeys.check_scopes(["query"]) == ["query"]
    assert apikeys.check_scopes(["query", "admin", "query"]) == ["admin", "query"]
    assert set(apikeys.SCOPES) == {"query", "label", "admin"}


@pytest.mark.parametrize("bad", [[], ["root"], ["query", "write"], ["Admin"], [""]])
def test_check_scopes_errors(bad: list[str]) -> None:
    with pytest.raises(ValueError, match="scopes"):
        apikeys.check_scopes(bad)


# -- pagination cursor (pure helpers of maft/db/crud.py) --------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2025, 6, 1, 12, 0),  # naive (an old cursor from SQLite): taken as UTC
    ],
)
def test_cursor_round_trip(stamp: datetime) -> None:
    row = SimpleNamespace(created_at=stamp, id=uuid.uuid4())
    cursor = encode_cursor(row)  # type: ignore[arg-type]
    assert isinstance(cursor, str)
    assert re.fullmatch(r"[A-Za-z0-9_=-]+", cursor)  # URL-safe
    decoded_stamp, decoded_id = decode_cursor(cursor)
    assert decoded_stamp == as_utc(stamp)  # the same instant, compared in UTC
    assert decoded_stamp.utcoffset() == timedelta(0)
    assert decoded_id == row.id


def test_cursors_differ_per_row() -> None:
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    a = encode_cursor(SimpleNamespace(created_at=stamp, id=uuid.uuid4()))  # type: ignore[arg-type]
    b = encode_cursor(SimpleNamespace(created_at=stamp, id=uuid.uuid4()))  # type: ignore[arg-type]
    assert a != b


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 at all!",
        "abc",  # bad padding
        _b64(b"no separator"),
        _b64(b"2025-01-01T00:00:00|not-a-uuid"),
        _b64(b"yesterday|" + str(uuid.uuid4()).encode()),
        _b64(b"2025-01-01T00:00:00|" + str(uuid.uuid4()).encode() + b"|extra"),
        _b64(b"\xff\xfe|\x00"),
    ],
)
def test_malformed_cursor(cursor: str) -> None:
    with pytest.raises(ValueError, match="malformed cursor"):
        decode_cursor(cursor)
