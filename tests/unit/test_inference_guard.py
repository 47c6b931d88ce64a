"""The middleware in vLLM's API server: the inference key everywhere but health and metrics,
and no runtime LoRA loading unless enabled (ASGI calls, no server)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from services.inference.guard import Guard, request_path
from services.inference.settings import InferenceSettings


@pytest.fixture(autouse=True)
def _no_maft_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MAFT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setitem(InferenceSettings.model_config, "env_file", None)


async def call(guard: Guard, path: str, *, key: str | None = None, method: str = "POST",
               kind: str = "http") -> tuple[int, list[dict[str, Any]]]:
    """Send one request through the guard; (status, messages sent); 200 when it passed."""
    sent: list[dict[str, Any]] = []
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    scope = {"type": kind, "method": method, "path": path, "root_path": "", "headers": headers}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    await guard(scope, receive, send)  # type: ignore[arg-type]
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    return (start["status"] if start else 200 if not sent else 0), sent


async def passed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The app behind the guard: sends nothing (status 200 in `call`)."""


def guard(tmp_path: Path, **settings: Any) -> Guard:
    return Guard(passed, InferenceSettings(home=tmp_path, **settings))


async def test_key_required_everywhere_but_health_and_metrics(tmp_path: Path) -> None:
    g = guard(tmp_path, inference_api_key="k")
    for path in ("/v1/chat/completions", "/invocations", "/tokenize", "/v1/models", "/docs"):
        assert (await call(g, path))[0] == 401, path  # vLLM's own check skips /invocations
        assert (await call(g, path, key="wrong"))[0] == 401, path
        assert (await call(g, path, key="k"))[0] == 200, path
    for path in ("/health", "/ping", "/metrics", "/version"):
        assert (await call(g, path, method="GET"))[0] == 200, path
    assert (await call(g, "/v1/models", method="OPTIONS"))[0] == 200  # CORS preflight
    _, sent = await call(g, "/v1/realtime", kind="websocket")
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Unauthorized"}]


async def test_runtime_lora_endpoints_are_off_unless_enabled(tmp_path: Path) -> None:
    for g in (guard(tmp_path), guard(tmp_path, inference_api_key="k")):
        for path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/adapters",
                     "/adapters/gen-0@v1", "//v1/load_lora_adapter/", "/adapters/"):
            status, sent = await call(g, path, key="k")
            assert status == 403, path
            assert b"MAFT_RUNTIME_LORA_ENDPOINTS" in sent[-1]["body"]
    enabled = guard(tmp_path, inference_api_key="k", runtime_lora_endpoints=True)
    assert (await call(enabled, "/v1/load_lora_adapter", key="k"))[0] == 200
    assert (await call(enabled, "/v1/load_lora_adapter"))[0] == 401


def test_request_path_is_normalised() -> None:
    assert request_path({"path": "/api//v1/load_lora_adapter/", "root_path": "/api"}) == \
        "/v1/load_lora_adapter"
    assert request_path({"path": "/"}) == "/"
