"""Client of the inference service: vLLM's OpenAI-compatible HTTP API.

Agents are chosen by `model = lora_name` (or the `base_model_name` for the base model).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from maft.adapter_store import AdapterStore, normalized_model_path
from maft.exceptions import (
    AdapterNotFoundError,
    AdapterUntrustedError,
    InferenceError,
    InferenceTimeoutError,
    InferenceUnavailableError,
)
from maft.tasks.base import Message


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one chat completion; `extra` passes vLLM-specific fields."""

    temperature: float = 1.0
    top_p: float = 0.9
    max_tokens: int = 512
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    """One chat completion's text and accounting."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    latency_ms: float


class ChatBackend(Protocol):
    """Anything that answers a chat completion for a model name."""

    async def chat(self, *, model: str, messages: list[Message], sampling: Sampling) -> Completion:
        """One chat completion."""
        ...


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    err = body.get("error", body) if isinstance(body, dict) else body
    return str(err.get("message", err) if isinstance(err, dict) else err)[:500]


class InferenceClient:
    """Async client of one OpenAI-compatible inference endpoint (one long-lived httpx client)."""

    def __init__(self, base_url: str, *, timeout: float = 300.0, api_key: str | None = None,
                 connect_timeout: float = 5.0, adapter_store: str | Path | None = None) -> None:
        """`adapter_store`: the store's path as the server sees it (the same in every process
        of a deployment); with it, `ensure_loadable` trusts only adapters loaded from there."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.adapter_store = None if adapter_store is None else AdapterStore(
            Path(normalized_model_path(adapter_store)))
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise InferenceTimeoutError(f"inference at {self.base_url} timed out ({path})") from exc
        except httpx.TransportError as exc:
            raise InferenceUnavailableError(
                f"inference at {self.base_url} is unreachable: {exc!r}") from exc

    async def chat(self, *, model: str, messages: list[Message], sampling: Sampling) -> Completion:
        """One chat completion with `model` (a lora_name or the base_model_name)."""
        body = {"model": model, "messages": messages, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, **sampling.extra}
        start = time.perf_counter()
        response = await self._request("POST", "/v1/chat/completions", json=body)
        latency_ms = (time.perf_counter() - start) * 1000
        if response.status_code == 404:
            raise AdapterNotFoundError(model, _error_detail(response))
        if response.status_code >= 400:
            raise InferenceError(f"inference answered {response.status_code}: "
                                 f"{_error_detail(response)}", status_code=response.status_code)
        data = response.json()
        choice, usage = data["choices"][0], data.get("usage") or {}
        return Completion(text=choice["message"].get("content") or "",
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          finish_reason=choice.get("finish_reason"), latency_ms=latency_ms)

    async def prompt_tokens(self, *, model: str, messages: list[Message]) -> tuple[int, int]:
        """(tokens of `messages` as the chat template renders them, the model's context length)
        from vLLM's /tokenize."""
        body = {"model": model, "messages": messages, "add_generation_prompt": True}
        response = await self._request("POST", "/tokenize", json=body)
        if response.status_code >= 400:
            raise InferenceError(f"/tokenize answered {response.status_code}: "
                                 f"{_error_detail(response)}", status_code=response.status_code)
        data = response.json()
        return int(data["count"]), int(data["max_model_len"])

    async def models(self) -> list[dict[str, Any]]:
        """The model cards of /v1/models: the base model, then every loaded adapter (its `root`
        is the folder it was loaded from, its `parent` the base model)."""
        response = await self._request("GET", "/v1/models")
        if response.status_code >= 400:
            raise InferenceError(f"/v1/models answered {response.status_code}",
                                 status_code=response.status_code)
        return list(response.json().get("data", []))

    async def model_names(self) -> list[str]:
        """Names the server serves now: the base model and every loaded adapter."""
        return [m["id"] for m in await self.models()]

    async def healthy(self) -> bool:
        """Whether the server's /health answers 200."""
        try:
            return (await self._request("GET", "/health")).status_code == 200
        except InferenceError:
            return False

    async def ensure_loadable(self, lora_name: str) -> None:
        """Make the server resolve and load `lora_name` (a 1-token request), then check that it
        serves it from the store; raise if it cannot, or if it serves it from elsewhere."""
        if await self._loaded(lora_name):
            return
        await self.chat(model=lora_name, messages=[{"role": "user", "content": "hi"}],
                        sampling=Sampling(temperature=0.0, max_tokens=1))
        await self._loaded(lora_name)

    async def _loaded(self, lora_name: str) -> bool:
        """Whether `lora_name` is loaded; AdapterUntrustedError when it was loaded from a
        folder other than its own in the store (a base model has no parent: not checked)."""
        card = next((m for m in await self.models() if m.get("id") == lora_name), None)
        if card is None or card.get("parent") is None or self.adapter_store is None:
            return card is not None
        expected = str(self.adapter_store.root / lora_name)
        if card.get("root") != expected:
            raise AdapterUntrustedError(lora_name, str(card.get("root")), expected)
        return True
