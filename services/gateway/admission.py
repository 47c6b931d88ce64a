"""Admission control: a bounded number of debates in flight per replica, a bounded queue.

A debate takes a slot for its whole run. When every slot is taken it waits in a FIFO queue (at
most `max_debates_queued` waiters, each at most `queue_timeout_s`); beyond that the request is
refused at once with OverloadedError (503 + Retry-After), so overload sheds load instead of
slowing every debate down until all of them time out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

from starlette.types import Receive

from maft.exceptions import OverloadedError
from services.gateway import metrics
from services.gateway.settings import GatewaySettings

Release = Callable[[], None]
T = TypeVar("T")


class ClientGoneError(Exception):
    """The client closed the connection before its debate ended; the debate was cancelled."""


class Admission:
    """Slots and queue of one replica; `retry_after` estimates when a slot frees."""

    def __init__(self, slots: int, queued: int, queue_timeout_s: float) -> None:
        self.slots, self.max_queued, self.queue_timeout_s = slots, queued, queue_timeout_s
        self._free = asyncio.Semaphore(slots)
        self.waiting = self.running = 0
        self.typical_debate_s = 10.0  # moving average of finished debates' durations
        metrics.IN_FLIGHT.set_function(lambda: self.running)
        metrics.QUEUED.set_function(lambda: self.waiting)

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Admission:
        """Bounds from the gateway settings."""
        return cls(settings.max_debates_in_flight, settings.max_debates_queued,
                   settings.queue_timeout_s)

    def retry_after(self) -> int:
        """Seconds until the queue ahead of a new request would have drained, at least 1."""
        rounds = (self.waiting + 1) / self.slots
        return max(1, math.ceil(rounds * self.typical_debate_s))

    def _refuse(self, why: str) -> OverloadedError:
        metrics.SHED.labels(reason=why).inc()
        seconds = self.retry_after()
        return OverloadedError(
            f"the gateway is at capacity ({self.running} debates running, {self.waiting} "
            f"waiting; {why}); retry in about {seconds} s", retry_after=seconds)

    async def acquire(self) -> Release:
        """Take a slot (waiting in the queue if allowed); the returned function frees it."""
        if self._free.locked() and self.waiting >= self.max_queued:
            raise self._refuse("queue full")
        self.waiting += 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await self._free.acquire()
        except TimeoutError:
            raise self._refuse(f"waited {self.queue_timeout_s:.0f} s for a slot") from None
        finally:
            self.waiting -= 1
            metrics.QUEUE_SECONDS.observe(time.perf_counter() - start)
        self.running += 1
        return self._releaser(time.perf_counter())

    def _releaser(self, started: float) -> Release:
        done = False

        def release() -> None:
            nonlocal done
            if not done:  # idempotent: a stream and its job may both try
                done = True
                self.running -= 1
                seconds = time.perf_counter() - started
                self.typical_debate_s = 0.8 * self.typical_debate_s + 0.2 * seconds
                self._free.release()
        return release

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A slot for the body of the `async with`."""
        release = await self.acquire()
        try:
            yield
        finally:
            release()



async def until_disconnect(receive: Receive) -> None:
    """Return when the client closes the connection (its request body already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def while_connected(receive: Receive, work: Awaitable[T]) -> T:
    """The result of `work`, which is cancelled (ClientGoneError) if the client goes away.

    Cancelling a debate cancels its requests to vLLM: httpx closes their connections and vLLM
    aborts a request whose connection closes, so abandoned debates stop costing compute.
    """
    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnect(receive))
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not job.done():
            job.cancel()
            with suppress(asyncio.CancelledError):
                await job
    if job.cancelled():
        raise ClientGoneError("the client closed the connection")
    return job.result()


def cancel_on_disconnect(receive: Receive, job: asyncio.Task[T]) -> asyncio.Task[None]:
    """Watch the connection while `job` runs (a streamed debate waits silently between rounds,
    so a failed write would notice the client's departure only at the next round); the
    returned watcher cancels `job` when the client goes. Cancel the watcher when done."""
    watcher = asyncio.ensure_future(until_disconnect(receive))
    watcher.add_done_callback(lambda _: job.cancel())
    job.add_done_callback(lambda _: watcher.cancel())
    return watcher
