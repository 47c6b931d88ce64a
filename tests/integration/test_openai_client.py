"""The official `openai` client against a live gateway (uvicorn) on real vLLM and Postgres."""

from __future__ import annotations

import httpx
import openai
import pytest
from sqlalchemy import Engine

from maft.db.session import make_session_factory
from tests.fixtures.db import reset
from tests.fixtures.gateway import LiveServer, make_keys, settings_for
from tests.fixtures.vllm import VllmServer

pytestmark = pytest.mark.vllm


@pytest.fixture
def live(pg_url: str, pg_engine: Engine, vllm_tiny: VllmServer):  # type: ignore[no-untyped-def]
    """A live gateway and a query key."""
    reset(pg_engine, vllm_tiny.served_name)
    keys = make_keys(make_session_factory(pg_engine))
    with LiveServer(settings_for(pg_url, vllm_tiny.url, vllm_tiny.served_name,
                                 adapter_store=vllm_tiny.store.root)) as server:
        yield server, keys


def test_plain_completion(live) -> None:  # type: ignore[no-untyped-def]
    server, keys = live
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys.query)
    models = [m.id for m in client.models.list()]
    completion = client.chat.completions.create(
        model="maft-debate", messages=[{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "What is 3+4?"}])
    maft = completion.model_extra["maft"]  # type: ignore[index]
    assert "maft-debate" in models and "maft-majority" in models
    assert completion.choices[0].message.role == "assistant"
    assert isinstance(completion.choices[0].message.content, str)
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert [r["round"] for r in maft["rounds"]] == [1, 2] and len(maft["rounds"][0]["answers"]) == 3
    stored = httpx.get(f"{server.url}/v1/debates/{maft['debate_id']}",
                       headers={"Authorization": f"Bearer {keys.query}"}).json()
    assert stored["question"] == "What is 3+4?" and stored["source"] == "chat"
    assert stored["final_answer"] == maft["final_answer"]


def test_streaming_completion(live) -> None:  # type: ignore[no-untyped-def]
    server, keys = live
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys.query)
    stream = client.chat.completions.create(
        model="maft-debate", stream=True, messages=[{"role": "user", "content": "What is 5+5?"}])
    chunks = list(stream)
    rounds = [c.model_extra["maft"]["round"] for c in chunks  # type: ignore[index]
              if c.model_extra and "round" in c.model_extra.get("maft", {})]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1]
    assert rounds == [1, 2]
    assert content and last.choices[0].finish_reason == "stop"
    debate_id = last.model_extra["maft"]["debate_id"]  # type: ignore[index]
    stored = httpx.get(f"{server.url}/v1/debates/{debate_id}",
                       headers={"Authorization": f"Bearer {keys.query}"}).json()
    assert stored["status"] == "completed" and len(stored["transcript"]) == 2


def test_bad_key_and_unknown_model(live) -> None:  # type: ignore[no-untyped-def]
    server, keys = live
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="maft_nope_nope").models.list()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys.query)
    with pytest.raises(openai.NotFoundError, match="gpt-4o"):
        client.chat.completions.create(model="gpt-4o",
                                       messages=[{"role": "user", "content": "hi"}])
