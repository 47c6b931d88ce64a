"""Gateway behaviour that needs Postgres but no model: auth, validation, inference down."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from maft.db.models import Debate, Feedback
from services.gateway.settings import GatewaySettings
from tests.fixtures.gateway import gateway_client, make_keys


def count(sessions: sessionmaker[Session], table: type) -> int:
    """Rows in a table."""
    with sessions() as db:
        return int(db.scalar(select(func.count()).select_from(table)) or 0)


async def test_healthz_needs_nothing(offline_settings: GatewaySettings) -> None:
    async with gateway_client(offline_settings) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_reports_inference_down(offline_settings: GatewaySettings) -> None:
    async with gateway_client(offline_settings) as client:
        response = await client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["inference"].startswith("failed")


async def test_auth(offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    keys = make_keys(offline_db)
    async with gateway_client(offline_settings) as client:
        missing = await client.get("/v1/debates")
        bad = await client.get("/v1/debates", headers={"Authorization": "Bearer maft_x_y"})
        revoked = await client.get("/v1/debates",
                                   headers={"Authorization": f"Bearer {keys.revoked}"})
        query_ok = await client.get("/v1/debates",
                                    headers={"Authorization": f"Bearer {keys.query}"})
        query_admin = await client.get("/v1/adapters",
                                       headers={"Authorization": f"Bearer {keys.query}"})
        admin_ok = await client.get("/v1/adapters",
                                    headers={"Authorization": f"Bearer {keys.admin}"})
        admin_query = await client.get("/v1/debates",
                                       headers={"Authorization": f"Bearer {keys.admin}"})
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]["message"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert bad.status_code == 401 and revoked.status_code == 401
    assert query_ok.status_code == 200 and admin_query.status_code == 200
    assert query_admin.status_code == 403 and "admin" in query_admin.json()["error"]["message"]
    assert admin_ok.status_code == 200 and admin_ok.json()["active_version"] == 0


async def test_auth_disabled_logs_a_warning(offline_settings: GatewaySettings,
                                            caplog: pytest.LogCaptureFixture) -> None:
    settings = offline_settings.model_copy(update={"auth_disabled": True})
    with caplog.at_level(logging.WARNING):
        async with gateway_client(settings) as client:
            response = await client.get("/v1/debates")
    assert response.status_code == 200
    assert any("AUTH IS DISABLED" in r.message for r in caplog.records)


BAD_BODIES = [
    ({"question": ""}, "question"),
    ({"question": "   "}, "blank"),
    ({"question": "x" * 4001}, "question"),
    ({"question": "1+1?", "agents": 0}, "agents"),
    ({"question": "1+1?", "agents": 9}, "agents"),
    ({"question": "1+1?", "rounds": 0}, "rounds"),
    ({"question": "1+1?", "rounds": 5}, "rounds"),
    ({"question": "1+1?", "task": "poetry"}, "unknown task 'poetry'"),
    ({"question": "1+1?", "agents": "3"}, "agents"),
    ({"question": 5}, "question"),
    ({"question": "1+1?", "temperature": -1}, "temperature"),
    ({"question": "1+1?", "max_tokens": 0}, "max_tokens"),
    ({"question": "1+1?", "reference_answer": "blue"}, "not a number"),
    ({"question": "1+1?", "colour": "red"}, "colour"),
    ({}, "question"),
]


async def test_bad_input_is_rejected_and_nothing_stored(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    keys = make_keys(offline_db)
    async with gateway_client(offline_settings, keys.query) as client:
        for body, needle in BAD_BODIES:
            response = await client.post("/v1/debates", json=body)
            assert response.status_code == 422, (body, response.text)
            assert needle in response.json()["error"]["message"], (body, response.text)
        malformed = await client.post("/v1/debates", content=b"{not json",
                                      headers={"Content-Type": "application/json"})
        assert malformed.status_code == 422
        assert "not valid JSON" in malformed.json()["error"]["message"]
    assert count(offline_db, Debate) == 0


async def test_unknown_ids_are_404(offline_settings: GatewaySettings,
                                   offline_db: sessionmaker[Session]) -> None:
    keys = make_keys(offline_db)
    async with gateway_client(offline_settings, keys.query) as client:
        for debate_id in (str(uuid.uuid4()), "not-a-uuid"):
            got = await client.get(f"/v1/debates/{debate_id}")
            fed = await client.post(f"/v1/debates/{debate_id}/feedback",
                                    json={"correct_answer": "4"})
            assert got.status_code == 404 and "not found" in got.json()["error"]["message"]
            assert fed.status_code == 404
        bad_cursor = await client.get("/v1/debates", params={"cursor": "@@@"})
        assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.json()["error"]["message"]
    assert count(offline_db, Feedback) == 0


async def test_inference_down_gives_503_and_stores_a_failed_debate(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    keys = make_keys(offline_db)
    async with gateway_client(offline_settings, keys.query) as client:
        response = await client.post("/v1/debates", json={"question": "What is 2+2?"})
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert "unreachable" in error["message"]
        stored = await client.get(f"/v1/debates/{error['debate_id']}")
    assert stored.status_code == 200
    debate = stored.json()
    assert debate["status"] == "failed" and "unreachable" in debate["error"]
    assert debate["transcript"] == []


async def test_chat_rejects_unknown_preset_and_missing_question(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    keys = make_keys(offline_db)
    async with gateway_client(offline_settings, keys.query) as client:
        unknown = await client.post("/v1/chat/completions", json={
            "model": "gpt-9", "messages": [{"role": "user", "content": "1+1?"}]})
        no_user = await client.post("/v1/chat/completions", json={
            "model": "maft-debate", "messages": [{"role": "system", "content": "hi"}]})
        models = await client.get("/v1/models")
    assert unknown.status_code == 404 and "gpt-9" in unknown.json()["error"]["message"]
    assert no_user.status_code == 422 and "user message" in no_user.json()["error"]["message"]
    assert "maft-debate" in [m["id"] for m in models.json()["data"]]
    assert count(offline_db, Debate) == 0


async def test_training_run_with_broker_down_is_503_and_releases_the_lock(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    keys = make_keys(offline_db)
    settings = offline_settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    async with gateway_client(settings, keys.admin) as client:
        first = await client.post("/v1/training-runs", json={"task": "arithmetic"})
        second = await client.post("/v1/training-runs", json={})
        runs = (await client.get("/v1/training-runs")).json()["data"]
    assert first.status_code == 503, first.text
    assert first.json()["error"]["type"] == "queue_unavailable"
    assert second.status_code == 503  # not 409: the failed run released the lock
    assert [r["status"] for r in runs] == ["failed", "failed"]
    assert "unavailable" in runs[0]["error"]


async def test_training_run_options_are_validated(offline_settings: GatewaySettings,
                                                  offline_db: sessionmaker[Session]) -> None:
    keys = make_keys(offline_db)
    async with gateway_client(offline_settings, keys.admin) as client:
        bad_w = await client.post("/v1/training-runs", json={"w": 2})
        bad_agent = await client.post("/v1/training-runs", json={"train_agents": ["judge-1"]})
        unknown = await client.get(f"/v1/training-runs/{uuid.uuid4()}")
    async with gateway_client(offline_settings, keys.query) as client:
        forbidden = await client.post("/v1/training-runs", json={})
    assert bad_w.status_code == 422 and "w" in bad_w.json()["error"]["message"]
    assert bad_agent.status_code == 422 and "generator-<n>" in bad_agent.json()["error"]["message"]
    assert unknown.status_code == 404 and forbidden.status_code == 403


async def test_debates_left_running_by_a_dead_gateway_are_failed_at_startup(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    from datetime import UTC, datetime, timedelta

    from maft.db import crud
    from maft.debate import DebateConfig

    with offline_db() as db, db.begin():
        old = crud.create_debate(db, question="q", task="numeric", config=DebateConfig(),
                                 society_version=0)
        old.created_at = datetime.now(UTC) - timedelta(hours=2)
        fresh = crud.create_debate(db, question="q2", task="numeric", config=DebateConfig(),
                                   society_version=0)
    async with gateway_client(offline_settings.model_copy(update={"auth_disabled": True})) as c:
        stale = (await c.get(f"/v1/debates/{old.id}")).json()
        running = (await c.get(f"/v1/debates/{fresh.id}")).json()
    assert stale["status"] == "failed" and "interrupted" in stale["error"]
    assert running["status"] == "running"


async def test_api_docs_load_nothing_from_other_hosts(offline_settings: GatewaySettings) -> None:
    async with gateway_client(offline_settings) as client:
        page = await client.get("/docs")
        assets = re.findall(r'(?:href|src)="([^"]+)"', page.text)
        fetched = [await client.get(url) for url in assets]
        schema = await client.get(page.text.split("url: '")[1].split("'")[0])
    assert page.status_code == 200 and len(assets) == 3
    assert all(url.startswith("/static/") for url in assets), assets
    assert all(r.status_code == 200 and len(r.content) > 500 for r in fetched)
    assert schema.json()["info"]["title"] == "MAFT gateway"
