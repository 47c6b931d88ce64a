"""Per-key rate limits: fixed one-minute windows, in Redis or in this process.

Redis (`MAFT_RATE_LIMIT_REDIS_URL`, else the broker's Redis) makes a limit hold across gateway
replicas; with the embedded default's `filesystem://` broker there is no Redis and the counts
live in the process. If Redis cannot be reached the request is let through (fail open) and a
warning is logged at most once a minute: a limiter outage must not take the API down, and
admission control still bounds the load each replica takes.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from maft.exceptions import RateLimitedError
from services.gateway import metrics
from services.gateway.settings import GatewaySettings

log = logging.getLogger("maft.gateway")
WINDOW_S = 60


class Counter(Protocol):
    """Counts hits of a key in the current window."""

    async def incr(self, key: str, window: int) -> int:
        """The count of `key` in `window` after this hit."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryCounter:
    """Counts in this process (one gateway replica)."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int]] = {}

    async def incr(self, key: str, window: int) -> int:
        """The count of `key` in `window` after this hit (older windows are dropped)."""
        start, count = self.counts.get(key, (window, 0))
        count = count + 1 if start == window else 1
        self.counts[key] = (window, count)
        if len(self.counts) > 100_000:  # keys of past windows
            self.counts = {k: v for k, v in self.counts.items() if v[0] == window}
        return count

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisCounter:
    """Counts in Redis, shared by every replica; keys expire with their window."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url, socket_timeout=0.5,
                                              socket_connect_timeout=0.5)

    async def incr(self, key: str, window: int) -> int:
        """INCR and EXPIRE in one round trip."""
        name = f"maft:ratelimit:{key}:{window}"
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, WINDOW_S * 2)
            count, _ = await pipe.execute()
        return int(count)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


class RateLimiter:
    """Checks hits against per-minute limits; RateLimitedError (429) beyond one."""

    def __init__(self, counter: Counter) -> None:
        self.counter, self._warned = counter, 0.0

    async def hit(self, bucket: str, key: str, limit: int) -> None:
        """Count one hit of `key` in `bucket`; raise if it exceeds `limit` (0: no limit)."""
        if limit <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_S)
        try:
            count = await self.counter.incr(f"{bucket}:{key}", window)
        except (RedisError, OSError, RuntimeError) as exc:
            self._warn(exc, now)
            return
        if count > limit:
            metrics.RATE_LIMITED.labels(bucket=bucket).inc()
            retry = max(1, int((window + 1) * WINDOW_S - now) + 1)
            raise RateLimitedError(f"rate limit of {limit} {bucket} per minute exceeded for "
                                   f"this API key; retry in {retry} s", retry_after=retry)

    def _warn(self, exc: Exception, now: float) -> None:
        if now - self._warned > WINDOW_S:
            self._warned = now
            log.warning("rate limits not enforced: Redis unreachable (%s)", exc)


def make_limiter(settings: GatewaySettings) -> RateLimiter:
    """Redis counters when a Redis is configured (or is the broker), else in-process."""
    url = settings.rate_limit_redis_url
    if url is None and settings.broker_url.startswith(("redis://", "rediss://")):
        url = settings.broker_url
    return RateLimiter(RedisCounter(url) if url else MemoryCounter())
