"""Supervision of `maft up`'s children: a crashed one is restarted with backoff, and says so.

A crash kills the child's whole process group first (vLLM's EngineCore and workers, Celery's
pool and embedded beat outlive a SIGKILLed parent: left alone they would hold gigabytes, or
run a second beat next to the restarted one), waits for its port to be free, then starts it
again after 1 s, 2 s, 4 s ... (capped). The count of crashes resets once a child has run
`healthy_after_s`; `max_crashes` within `window_s` give up (the caller stops everything).
The other children keep running meanwhile: the gateway answers 503 while inference is down.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from maft.exceptions import MaftError
from maft.processes import Child, port_free


class GaveUpError(MaftError):
    """A child crashed too often, or its port stayed taken: supervision stops."""


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart, and when to give up."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_crashes: int = 5
    window_s: float = 600.0
    healthy_after_s: float = 300.0
    port_wait_s: float = 60.0
    stop_grace_s: float = 5.0  # a crashed child has nothing left to drain

    def delay(self, crashes: int) -> float:
        """Seconds before restarting after the `crashes`-th crash in the window."""
        return min(self.first_delay_s * 2 ** (crashes - 1), self.max_delay_s)


@dataclass
class Supervised:
    """A child, how to tell it is serving again, and the port it must find free."""

    child: Child
    ready: Callable[[], bool] | None = None
    port: tuple[str, int] | None = None
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None
    down_since: float | None = None


def describe_exit(returncode: int | None) -> str:
    """'signal 9 (SIGKILL)' or 'exit code 1'."""
    if returncode is not None and returncode < 0:
        try:
            return f"signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    """Starts, watches (`tick`, polled by the caller) and stops a set of children."""

    def __init__(self, items: list[Supervised], say: Callable[[str], None],
                 policy: RestartPolicy | None = None) -> None:
        self.items, self.say, self.policy = items, say, policy or RestartPolicy()

    def start(self) -> None:
        """Start every child."""
        for item in self.items:
            item.child.start()

    def stop(self) -> None:
        """Stop every child's whole process group, in reverse order of starting."""
        for item in reversed(self.items):
            item.child.stop()

    def dead(self) -> list[Child]:
        """Children that exited and are not waiting for a restart."""
        return [i.child for i in self.items if i.restart_at is None and not i.child.alive()]

    def tick(self, now: float | None = None) -> None:
        """Handle crashes, due restarts and recoveries; GaveUpError when it must stop."""
        now = time.monotonic() if now is None else now
        for item in self.items:
            if item.restart_at is None and not item.child.alive():
                self._crashed(item, now)
            elif item.restart_at is not None and now >= item.restart_at:
                self._restart(item, item.restart_at, now)
            elif item.down_since is not None and item.child.alive() and self._ready(item):
                self.say(f"{item.child.name} is back, {now - item.down_since:.0f} s after it "
                         "exited")
                item.down_since = None

    def _crashed(self, item: Supervised, now: float) -> None:
        """Kill what is left of its group, count the crash, schedule the restart."""
        child, p = item.child, self.policy
        code = child.proc.returncode if child.proc is not None else None
        child.stop(grace=p.stop_grace_s)
        if now - child.started_at >= p.healthy_after_s:
            item.crashes.clear()  # it ran long enough: a new series of crashes
        item.crashes = [t for t in item.crashes if now - t < p.window_s] + [now]
        n, window = len(item.crashes), f"{p.window_s / 60:.0f} min"
        if n >= p.max_crashes:
            raise GaveUpError(f"{child.name} exited ({describe_exit(code)}), {n} times in "
                              f"{window}; giving up. Its log: {child.log}")
        delay = p.delay(n)
        self.say(f"{child.name} exited ({describe_exit(code)}); restarting in {delay:.0f} s "
                 f"(crash {n} of {p.max_crashes} in {window}); its log: {child.log}")
        item.restart_at, item.down_since = now + delay, item.down_since or now

    def _restart(self, item: Supervised, due: float, now: float) -> None:
        """Start it again once its port is free."""
        if item.port is not None and not port_free(*item.port):
            if now - due > self.policy.port_wait_s:
                raise GaveUpError(f"{item.child.name}: port {item.port[1]} is still taken "
                                  f"{self.policy.port_wait_s:.0f} s after it exited")
            return
        item.child.start()
        item.restart_at = None
        self.say(f"{item.child.name} restarted (pid {item.child.pid})")

    @staticmethod
    def _ready(item: Supervised) -> bool:
        return item.ready is None or item.ready()
