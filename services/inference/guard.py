"""ASGI middleware in vLLM's API server: `vllm serve --middleware services.inference.guard.Guard`.

vLLM checks its API key (VLLM_API_KEY) only on paths under /v1, /v2, /inference and /cohere
(vllm/entrypoints/serve/middleware/authenticate.py, GUARDED_PREFIX), so SageMaker's
`POST /invocations` generates text, and (with runtime LoRA updating on) `POST /adapters` loads
any folder, without a key. And the store resolver needs VLLM_ALLOW_RUNTIME_LORA_UPDATING
(vllm/entrypoints/serve/engine/serving.py, `_check_model`), which also mounts the load and
unload endpoints (vllm/entrypoints/serve/lora/api_router.py). This middleware, outermost:

- with a key configured, requires it on every path but the health and metrics ones;
- refuses the runtime LoRA endpoints (403) unless MAFT_RUNTIME_LORA_ENDPOINTS=true.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from services.inference.settings import InferenceSettings, get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Reachable without the key: probes (kubelet, Docker) and Prometheus send none.
OPEN_PATHS = frozenset({"/health", "/ping", "/metrics", "/version"})
RUNTIME_LORA_PATHS = ("/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/adapters")


def request_path(scope: Scope) -> str:
    """The path as routing sees it: root_path removed, repeated and trailing slashes dropped."""
    path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
    return re.sub("/+", "/", path).rstrip("/") or "/"


def is_runtime_lora(path: str) -> bool:
    """Whether `path` is one of vLLM's (or SageMaker's) runtime LoRA load/unload endpoints."""
    return any(path == p or path.startswith(p + "/") for p in RUNTIME_LORA_PATHS)


class Guard:
    """The middleware (vLLM adds it with no arguments: settings come from MAFT_*)."""

    def __init__(self, app: App, settings: InferenceSettings | None = None) -> None:
        s = settings or get_settings()
        self.app = app
        self.key_hash = hashlib.sha256(s.inference_key.encode()).digest() \
            if s.inference_key else None
        self.runtime_lora = s.runtime_lora_endpoints

    def authorized(self, scope: Scope) -> bool:
        """Whether the request carries the key (always true when none is configured)."""
        if self.key_hash is None:
            return True
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        digest = hashlib.sha256(token.encode("latin-1")).digest()
        return scheme.lower() == "bearer" and hmac.compare_digest(digest, self.key_hash)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request must not reach vLLM, else None."""
        path = request_path(scope)
        if scope.get("method") != "OPTIONS" and path not in OPEN_PATHS \
                and not self.authorized(scope):
            return 401, "Unauthorized"
        if is_runtime_lora(path) and not self.runtime_lora:
            return 403, ("runtime LoRA loading is off: adapters are served from the adapter "
                         "store by name (MAFT_RUNTIME_LORA_ENDPOINTS=true enables it)")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refused is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refused[1]})
        else:
            await _respond(send, *refused)


async def _respond(send: Send, status: int, message: str) -> None:
    """A JSON error in vLLM's shape."""
    body = json.dumps({"error": {"message": message, "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
