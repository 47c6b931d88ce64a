"""Admission control, rate limits and cancellation, against a stand-in inference server whose
answers take a set time (tests/fixtures/fake_inference.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maft.db.models import Debate
from services.gateway.settings import GatewaySettings
from tests.fixtures.fake_inference import FakeInference
from tests.fixtures.gateway import LiveServer, gateway_client, make_keys
from tests.fixtures.trainer import REDIS_URL

ONE_CALL = {"question": "What is 2+2?", "agents": 1, "rounds": 1}


def on(fake: FakeInference, settings: GatewaySettings, **overrides: object) -> GatewaySettings:
    """`settings` pointed at the fake server."""
    return settings.model_copy(update={"inference_url": fake.url, **overrides})


async def timed(client: httpx.AsyncClient, body: dict[str, object]) -> tuple[httpx.Response,
                                                                             float]:
    """A debate request and its duration."""
    start = time.perf_counter()
    response = await client.post("/v1/debates", json=body)
    return response, time.perf_counter() - start


async def test_beyond_slots_and_queue_is_an_immediate_503(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    with FakeInference(delay_s=1.5) as fake:
        settings = on(fake, offline_settings, auth_disabled=True, max_debates_in_flight=1,
                      max_debates_queued=1)
        async with gateway_client(settings) as client:
            results = await asyncio.gather(*(timed(client, ONE_CALL) for _ in range(4)))
            metrics = (await client.get("/metrics")).text
    admitted = [(r, s) for r, s in results if r.status_code == 201]
    shed = [(r, s) for r, s in results if r.status_code == 503]
    assert len(admitted) == 2 and len(shed) == 2, [r.text for r, _ in results]
    assert all(s < 1.0 for _, s in shed) and max(s for _, s in admitted) > 2.5
    for response, _ in shed:
        assert int(response.headers["retry-after"]) >= 1
        assert "capacity" in response.json()["error"]["message"]
        assert response.json()["error"]["type"] == "overloaded"
    assert "maft_debate_queue_seconds_count" in metrics
    assert 'maft_debates_shed_total{reason="queue full"}' in metrics
    with offline_db() as db:  # shed requests stored nothing
        assert len(db.scalars(select(Debate)).all()) == 2


async def test_the_queue_wait_is_bounded(offline_settings: GatewaySettings,
                                         offline_db: sessionmaker[Session]) -> None:
    with FakeInference(delay_s=2.0) as fake:
        settings = on(fake, offline_settings, auth_disabled=True, max_debates_in_flight=1,
                      max_debates_queued=4, queue_timeout_s=0.5)
        async with gateway_client(settings) as client:
            results = await asyncio.gather(timed(client, ONE_CALL), timed(client, ONE_CALL))
    # Either request may reach the slot first; the other waits out the queue timeout.
    (first, _), (second, waited) = sorted(results, key=lambda r: r[0].status_code)
    assert first.status_code == 201, first.text
    assert second.status_code == 503 and 0.4 < waited < 1.5, second.text
    assert "waited" in second.json()["error"]["message"]


async def wait_for(check: object, timeout: float = 5.0) -> bool:
    """Poll `check()` until true or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_an_abandoned_debate_cancels_its_inference_requests(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session]) -> None:
    body = {"question": "What is 2+2?", "agents": 3, "rounds": 2}
    with FakeInference(delay_s=3.0) as fake:
        settings = on(fake, offline_settings, auth_disabled=True)
        with LiveServer(settings) as gateway:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=0.7) as client:
                with pytest.raises(httpx.ReadTimeout):  # the client gives up and disconnects
                    await client.post("/v1/debates", json=body)
                assert await wait_for(lambda: fake.counts.aborted == 3 and not
                                      fake.counts.running)
                chat = {"messages": [{"role": "user", "content": "2+2?"}], "stream": True}
                async with httpx.AsyncClient(base_url=gateway.url, timeout=1.0) as streamer, \
                        streamer.stream("POST", "/v1/chat/completions", json=chat) as stream:
                    lines = stream.aiter_lines()  # held: dropping it closes the stream
                    await anext(lines)
                    assert await wait_for(lambda: fake.counts.running == 3)
                assert await wait_for(lambda: fake.counts.aborted == 6 and not
                                      fake.counts.running)
            await asyncio.sleep(0.3)
    with offline_db() as db:
        debates = db.scalars(select(Debate)).all()
    assert fake.counts.served == 0
    assert [d.status for d in debates] == ["failed", "failed"]
    assert all("abandoned" in (d.error or "") for d in debates)


async def clear_of_window_edge() -> None:
    """Start a test of counts well inside one one-minute window of the limiter."""
    if time.time() % 60 > 50:
        await asyncio.sleep(61 - time.time() % 60)


async def test_rate_limit_per_key_in_process(offline_settings: GatewaySettings,
                                             offline_db: sessionmaker[Session],
                                             tmp_path: Path) -> None:
    await clear_of_window_edge()
    keys = make_keys(offline_db)
    settings = offline_settings.model_copy(update={"broker_url": "filesystem://",
                                                   "home": tmp_path, "rate_limit_per_minute": 3})
    async with gateway_client(settings, keys.query) as client:
        answers = [await client.get("/v1/debates") for _ in range(4)]
        other = await client.get("/v1/debates", headers={"Authorization": f"Bearer {keys.admin}"})
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 61
    assert answers[-1].json()["error"]["type"] == "rate_limit_exceeded"
    assert other.status_code == 200


async def test_rate_limit_in_redis_holds_across_replicas(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session],
        clean_redis: str) -> None:
    await clear_of_window_edge()
    keys = make_keys(offline_db)
    settings = offline_settings.model_copy(update={"broker_url": REDIS_URL,
                                                   "rate_limit_per_minute": 3})
    async with gateway_client(settings, keys.query) as one, \
            gateway_client(settings, keys.query) as two:
        codes = [(await c.get("/v1/debates")).status_code for c in (one, two, one, two)]
    assert codes == [200, 200, 200, 429]


async def test_rate_limits_fail_open_when_redis_is_down(
        offline_settings: GatewaySettings, offline_db: sessionmaker[Session],
        caplog: pytest.LogCaptureFixture) -> None:
    keys = make_keys(offline_db)
    settings = offline_settings.model_copy(update={
        "rate_limit_redis_url": "redis://127.0.0.1:9/0", "rate_limit_per_minute": 1})
    with caplog.at_level(logging.WARNING):
        async with gateway_client(settings, keys.query) as client:
            codes = [(await client.get("/v1/debates")).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert any("rate limits not enforced" in r.message for r in caplog.records)


async def test_debates_have_their_own_rate_limit(offline_settings: GatewaySettings,
                                                 offline_db: sessionmaker[Session],
                                                 tmp_path: Path) -> None:
    await clear_of_window_edge()
    keys = make_keys(offline_db)
    with FakeInference(delay_s=0.0) as fake:
        settings = on(fake, offline_settings, broker_url="filesystem://", home=tmp_path,
                      debate_rate_limit_per_minute=1)
        async with gateway_client(settings, keys.query) as client:
            first = await client.post("/v1/debates", json=ONE_CALL)
            second = await client.post("/v1/debates", json=ONE_CALL)
            chat = await client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "2+2?"}]})
            reads = await client.get("/v1/debates")
    assert first.status_code == 201, first.text
    assert second.status_code == 429 and chat.status_code == 429
    assert reads.status_code == 200
