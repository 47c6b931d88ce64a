"""Prometheus metrics of the gateway, served at /metrics (a pure ASGI middleware measures)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("maft_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("maft_http_request_seconds", "HTTP request latency", ["method", "route"],
                    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900))
DEBATES = Counter("maft_debates_total", "Debates by outcome", ["status", "task"])
DEBATE_SECONDS = Histogram("maft_debate_seconds", "Debate latency, from its slot to its end "
                           "(queue time excluded)", ["task"],
                           buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 900))
QUEUE_SECONDS = Histogram("maft_debate_queue_seconds", "Time a debate waited for a slot "
                          "(admitted or not)",
                          buckets=(0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120))
IN_FLIGHT = Gauge("maft_debates_in_flight", "Debates holding a slot in this replica")
QUEUED = Gauge("maft_debates_queued", "Debates waiting for a slot in this replica")
SHED = Counter("maft_debates_shed_total", "Debates refused with 503 at admission", ["reason"])
RATE_LIMITED = Counter("maft_rate_limited_total", "Requests refused with 429", ["bucket"])


def observe_debate(task: str, status: str, seconds: float | None) -> None:
    """Count a finished debate."""
    DEBATES.labels(status=status, task=task).inc()
    if seconds is not None:
        DEBATE_SECONDS.labels(task=task).observe(seconds)


class MeasureRequests:
    """Counts requests by route and status and times them; never touches the body stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Measure one HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), {"code": 500}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)
            REQUESTS.labels(scope["method"], route, str(status["code"])).inc()


def instrument(app: FastAPI) -> None:
    """Add the request-metrics middleware and the /metrics route."""
    app.add_middleware(MeasureRequests)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

