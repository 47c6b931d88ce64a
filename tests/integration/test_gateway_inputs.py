"""Hostile inputs get a 4xx with a message, never a 500, on PostgreSQL and SQLite; errors keep
the connection; size limits; timestamps are instants with a zone; the SQLite file is private."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from maft.db import crud, migrate
from maft.db.session import make_engine, make_session_factory
from maft.debate import DebateConfig
from services.gateway.settings import GatewaySettings
from tests.fixtures.fake_inference import FakeInference
from tests.fixtures.gateway import UNREACHABLE, LiveServer, gateway_client, settings_for

NUL = "a\x00b"


@pytest.fixture
def sqlite_db(tmp_path: Path) -> tuple[str, sessionmaker[Session]]:
    """A migrated SQLite database with society v0 = 'offline-base'."""
    url = f"sqlite:///{tmp_path / 'maft.db'}"
    migrate.upgrade(url)
    sessions = make_session_factory(make_engine(url))
    with sessions() as db, db.begin():
        crud.ensure_base_society(db, base_model_name="offline-base")
    return url, sessions


@pytest.fixture(params=["postgres", "sqlite"])
def any_db(request: pytest.FixtureRequest) -> Iterator[tuple[GatewaySettings,
                                                             sessionmaker[Session]]]:
    """(settings with auth off and no inference, sessions) on each database."""
    if request.param == "postgres":
        sessions = request.getfixturevalue("offline_db")
        url = request.getfixturevalue("pg_url")
    else:
        url, sessions = request.getfixturevalue("sqlite_db")
    yield settings_for(url, UNREACHABLE, "offline-base", inference_timeout_s=5.0,
                       auth_disabled=True), sessions


def failed_debate(sessions: sessionmaker[Session], created_at: datetime | None = None) -> str:
    """A stored debate's id."""
    with sessions() as db, db.begin():
        debate = crud.create_debate(db, question="What is 2+2?", task="numeric",
                                    config=DebateConfig(), society_version=0)
        if created_at is not None:
            debate.created_at = created_at
        return str(debate.id)


@pytest.mark.parametrize("version", [2**31, 2**63, -1])
async def test_society_versions_out_of_range_are_422(any_db: tuple[GatewaySettings, object],
                                                    version: int) -> None:
    async with gateway_client(any_db[0]) as client:
        response = await client.post(f"/v1/societies/{version}/activate")
    assert response.status_code == 422, response.text
    assert "version" in response.json()["error"]["message"]


async def test_nul_characters_are_422(any_db: tuple[GatewaySettings,
                                                    sessionmaker[Session]]) -> None:
    settings, sessions = any_db
    debate_id = failed_debate(sessions)
    async with gateway_client(settings) as client:
        answers = [
            await client.post("/v1/debates", json={"question": NUL}),
            await client.post("/v1/debates", json={"question": "2+2?", "task": NUL}),
            await client.post("/v1/debates", json={"question": "2+2?",
                                                   "reference_answer": NUL}),
            await client.get("/v1/debates", params={"task": NUL}),
            await client.get("/v1/debates", params={"cursor": NUL}),
            await client.post(f"/v1/debates/{debate_id}/feedback", json={"correct_answer": NUL}),
            await client.post(f"/v1/debates/{debate_id}/feedback",
                              json={"correct_answer": "4", "note": NUL}),
            await client.post("/v1/chat/completions",
                              json={"messages": [{"role": "user", "content": NUL}]}),
        ]
    for response in answers:
        assert response.status_code == 422, (response.request.url, response.text)
        assert "NUL" in response.json()["error"]["message"] or "cursor" in response.text


async def test_answers_longer_than_their_column_are_422(
        any_db: tuple[GatewaySettings, sessionmaker[Session]]) -> None:
    settings, sessions = any_db
    debate_id = failed_debate(sessions)
    async with gateway_client(settings) as client:
        answers = [
            await client.post("/v1/debates", json={"question": "2+2?",
                                                   "reference_answer": "7" * 201}),
            await client.post(f"/v1/debates/{debate_id}/feedback",
                              json={"correct_answer": "7" * 201}),
            await client.post(f"/v1/debates/{debate_id}/feedback",
                              json={"correct_answer": "1e300"}),  # normalises to 301 digits
            await client.post(f"/v1/debates/{debate_id}/feedback",
                              json={"correct_answer": 10**250}),
        ]
        fine = await client.post(f"/v1/debates/{debate_id}/feedback",
                                 json={"correct_answer": "7" * 200})
    for response in answers:
        assert response.status_code == 422, (response.request.content, response.text)
        assert "200" in response.json()["error"]["message"]
    assert fine.status_code == 201, fine.text


async def test_a_chat_message_over_the_limit_is_422(
        any_db: tuple[GatewaySettings, sessionmaker[Session]]) -> None:
    async with gateway_client(any_db[0]) as client:
        long = await client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "7" * 52_000}]})
        question = await client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "7" * 4001}]})
    assert long.status_code == 422 and "16000" in long.json()["error"]["message"]
    assert question.status_code == 422 and "4000" in question.json()["error"]["message"]


async def test_a_prompt_over_the_context_is_422_before_any_work(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    with FakeInference(delay_s=0.0, context=1024) as fake:  # 4 characters a token
        settings = offline_settings.model_copy(update={"inference_url": fake.url,
                                                       "auth_disabled": True})
        async with gateway_client(settings) as client:
            emoji = await client.post("/v1/debates", json={"question": "😀" * 3990})
            long_answers = await client.post("/v1/debates", json={
                "question": "What is 2+2?", "max_tokens": 400, "agents": 3, "rounds": 2})
            short = await client.post("/v1/debates", json={"question": "What is 2+2?",
                                                            "agents": 1, "rounds": 1})
            listed = (await client.get("/v1/debates")).json()["data"]
    for response in (emoji, long_answers):
        assert response.status_code == 422, response.text
        assert "context of 1024 tokens" in response.json()["error"]["message"]
    assert fake.counts.served == 1 and short.status_code == 201
    assert len(listed) == 1  # the refused debates were never stored


def raw_exchange(sock: socket.socket, path: str) -> bytes:
    """One HTTP/1.1 keep-alive request on `sock`; the whole response."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_an_error_keeps_the_keep_alive_connection(offline_settings: GatewaySettings) -> None:
    def boom() -> None:
        raise RuntimeError("a bug")

    live = LiveServer(offline_settings)
    live.server.config.app.add_api_route("/boom", boom)
    with live, socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        first = raw_exchange(sock, "/boom")
        try:
            second = raw_exchange(sock, "/healthz")
        except ConnectionResetError:
            second = b"reset"
    assert first.startswith(b"HTTP/1.1 500")
    assert second.startswith(b"HTTP/1.1 200"), second


def test_oversized_headers_are_431(offline_settings: GatewaySettings) -> None:
    with LiveServer(offline_settings) as live:
        huge = httpx.get(f"{live.url}/healthz", headers={"X-Big": "x" * 1_000_000})
        fine = httpx.get(f"{live.url}/healthz", headers={"X-Big": "x" * 8000})
        body = httpx.post(f"{live.url}/v1/debates", content=b"{" * 2_000_000,
                          headers={"Content-Type": "application/json"})
    assert huge.status_code == 431 and "16384" in huge.json()["error"]["message"]
    assert fine.status_code == 200
    assert body.status_code == 413


async def test_time_filters_compare_instants_and_times_carry_a_zone(
        any_db: tuple[GatewaySettings, sessionmaker[Session]]) -> None:
    settings, sessions = any_db
    noon = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    for minutes in (-90, -30, 30, 90):
        failed_debate(sessions, noon + timedelta(minutes=minutes))
    same_instant = ["2026-01-01T12:00:00Z", "2026-01-01T14:00:00+02:00",
                    "2026-01-01T07:00:00-05:00", "2026-01-01T12:00:00"]
    async with gateway_client(settings) as client:
        counts = [len((await client.get("/v1/debates", params={"since": s})).json()["data"])
                  for s in same_instant]
        until = (await client.get("/v1/debates", params={
            "until": "2026-01-01T13:00:00+01:00"})).json()["data"]
        first = (await client.get("/v1/debates", params={"limit": 2})).json()
        rest = (await client.get("/v1/debates", params={"cursor": first["next_cursor"]})).json()
    assert counts == [2, 2, 2, 2]
    assert len(until) == 2
    stamps = [d["created_at"] for d in first["data"] + rest["data"]]
    assert len(stamps) == 4 and len(set(stamps)) == 4
    for stamp in stamps:
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0), stamp


def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    fresh, old = tmp_path / "new" / "maft.db", tmp_path / "old.db"
    old.write_bytes(b"")
    os.chmod(old, 0o644)
    for path in (fresh, old):
        engine = make_engine(f"sqlite:///{path}")
        with engine.connect():
            pass
        engine.dispose()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


