"""Prometheus metrics of the gateway, served at /metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter("maft_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("maft_http_request_seconds", "HTTP request latency", ["method", "route"],
                    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900))
DEBATES = Counter("maft_debates_total", "Debates by outcome", ["status", "task"])
DEBATE_SECONDS = Histogram("maft_debate_seconds", "Debate latency", ["task"],
                           buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 900))


def observe_debate(task: str, status: str, seconds: float | None) -> None:
    """Count a finished debate."""
    DEBATES.labels(status=status, task=task).inc()
    if seconds is not None:
        DEBATE_SECONDS.labels(task=task).observe(seconds)


def instrument(app: FastAPI) -> None:
    """Add the request-metrics middleware and the /metrics route."""

    @app.middleware("http")
    async def _measure(request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
