"""Limits against a real vLLM (the tiny model): the prompt is counted with vLLM's tokenizer
before any work, and an abandoned debate's requests leave vLLM at once."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maft.db.models import Debate
from services.gateway.settings import GatewaySettings
from tests.fixtures.gateway import LiveServer, gateway_client, settings_for
from tests.fixtures.vllm import VllmServer

pytestmark = pytest.mark.vllm


@pytest.fixture
def settings(pg_url: str, vllm_tiny: VllmServer, tiny_db: sessionmaker[Session]
             ) -> GatewaySettings:
    """Gateway on the tiny server (context 2048), auth off."""
    return settings_for(pg_url, vllm_tiny.url, vllm_tiny.served_name, auth_disabled=True)


async def test_a_question_over_the_context_is_422_before_any_work(
        settings: GatewaySettings, tiny_db: sessionmaker[Session]) -> None:
    async with gateway_client(settings) as client:
        emoji = await client.post("/v1/debates", json={"question": "😀" * 4000})
        budget = await client.post("/v1/debates", json={
            "question": "What is 2+2?", "agents": 8, "rounds": 4, "max_tokens": 200})
        fits = await client.post("/v1/debates", json={"question": "What is 2+2?",
                                                       "agents": 2, "rounds": 2})
    for refused in (emoji, budget):
        assert refused.status_code == 422, refused.text
        assert "context of 2048 tokens" in refused.json()["error"]["message"]
    assert fits.status_code == 201, fits.text
    with tiny_db() as db:
        assert len(db.scalars(select(Debate)).all()) == 1


def vllm_running(url: str) -> float:
    """vLLM's vllm:num_requests_running, summed over its engines."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:num_requests_running"))


async def test_an_abandoned_debate_leaves_vllm_at_once(
        settings: GatewaySettings, vllm_tiny: VllmServer,
        tiny_db: sessionmaker[Session]) -> None:
    body = {"question": "Write a very long story.", "agents": 8, "rounds": 1,
            "temperature": 1.0, "max_tokens": 1900}
    with LiveServer(settings) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=1.5) as client:
            request = asyncio.create_task(client.post("/v1/debates", json=body))
            seen = 0.0
            while not request.done():
                seen = max(seen, await asyncio.to_thread(vllm_running, vllm_tiny.url))
                await asyncio.sleep(0.2)
            with pytest.raises(httpx.ReadTimeout):
                request.result()
        gone_at = time.monotonic()
        while await asyncio.to_thread(vllm_running, vllm_tiny.url) > 0:
            assert time.monotonic() - gone_at < 5, "vLLM kept the abandoned requests"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    assert seen >= 1
    with tiny_db() as db:
        [debate] = db.scalars(select(Debate)).all()
    assert debate.status == "failed" and "abandoned" in (debate.error or "")
