"""The outermost layer of the app (pure ASGI): size limits, and no exception escapes.

An exception that reaches the server after a response was sent makes uvicorn close the
connection, so the client's next request on that keep-alive connection was reset. Here every
unexpected error becomes a logged 500 with a JSON body and the connection stays usable.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.errors import error_response

log = logging.getLogger("maft.gateway")


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return 0


class Guard:
    """431 for oversized headers, 413 for an oversized declared body, 500 for the unexpected."""

    def __init__(self, app: ASGIApp, *, max_header_bytes: int, max_body_bytes: int) -> None:
        self.app, self.max_header_bytes, self.max_body_bytes = (
            app, max_header_bytes, max_body_bytes)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        size = sum(len(k) + len(v) for k, v in scope["headers"])
        if size > self.max_header_bytes:
            return 431, (f"request headers are {size} bytes; the limit is "
                         f"{self.max_header_bytes}"), "request_header_fields_too_large"
        if _declared_length(scope) > self.max_body_bytes:
            return 413, (f"request body over {self.max_body_bytes} bytes"), "payload_too_large"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the limits, then run the app, turning an escaped exception into a 500."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await error_response(refusal[0], refusal[1], refusal[2])(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if started:
                raise  # half a response was sent: only closing the connection is honest
            await error_response(500, "internal error; see the gateway log",
                                 "internal_error")(scope, receive, send)
