"""ensure_loadable trusts a listed adapter only when vLLM loaded it from the store's folder
(vLLM's /v1/models gives `root` = the adapter's path: OpenAIServingModels.show_available_models)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from maft.exceptions import AdapterUntrustedError
from maft.inference_client import InferenceClient

STORE = "/data/adapters"


def fake_vllm(cards: list[dict[str, object]], chats: list[str]) -> httpx.MockTransport:
    """/v1/models answers `cards`; a chat with an unlisted adapter loads it from the store."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": cards})
        model = json.loads(request.content)["model"]
        chats.append(model)
        cards.append({"id": model, "root": f"{STORE}/{model}", "parent": "base"})
        return httpx.Response(200, json={"choices": [{"message": {"content": "x"}}]})
    return httpx.MockTransport(handle)


def client(cards: list[dict[str, object]], chats: list[str],
           store: str | Path | None = STORE) -> InferenceClient:
    c = InferenceClient("http://inference", adapter_store=store)
    c._http = httpx.AsyncClient(base_url="http://inference", transport=fake_vllm(cards, chats))
    return c


BASE_CARD = {"id": "base", "root": "/models/base", "parent": None}


async def test_an_adapter_loaded_from_elsewhere_is_not_trusted() -> None:
    chats: list[str] = []
    cards = [BASE_CARD, {"id": "gen-0@v1", "root": "/tmp/evil", "parent": "base"}]
    with pytest.raises(AdapterUntrustedError, match="/tmp/evil, not from the adapter store"):
        await client(cards, chats).ensure_loadable("gen-0@v1")
    assert chats == []  # not asked to load again: vLLM would keep serving the listed one


async def test_store_adapters_and_the_base_model_are_trusted() -> None:
    chats: list[str] = []
    cards = [BASE_CARD, {"id": "gen-0@v1", "root": f"{STORE}/gen-0@v1", "parent": "base"}]
    c = client(cards, chats, STORE + "/")  # spelled differently, same folder
    await c.ensure_loadable("gen-0@v1")
    await c.ensure_loadable("base")
    await c.ensure_loadable("gen-1@v1")  # not listed: loaded by a request, then checked
    assert chats == ["gen-1@v1"]
