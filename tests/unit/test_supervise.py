"""Supervision of `maft up`'s children with real (tiny) processes: whole process groups are
killed, crashes restart with backoff and say so, too many crashes give up."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maft.processes import Child, group_pids
from maft.supervise import GaveUpError, RestartPolicy, Supervised, Supervisor, describe_exit

# A parent that starts a grandchild in its process group (as vLLM's API server starts its
# engine, or Celery its pool and beat), then waits.
PARENT = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
          "'import time; time.sleep(300)']); time.sleep(300)")
POLICY = RestartPolicy(first_delay_s=1, max_delay_s=4, max_crashes=3, window_s=600,
                       healthy_after_s=300, port_wait_s=5, stop_grace_s=2)


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Child]:
    c = Child("worker", [sys.executable, "-c", PARENT], dict(os.environ), tmp_path / "w.log")
    yield c
    c.stop(grace=1)


def sigkill_leader(child: Child) -> list[int]:
    """SIGKILL only the child's own process; return its group as it was."""
    group = wait_for_group(child, 2)
    os.kill(child.pid, signal.SIGKILL)
    child.proc.wait(timeout=10)  # type: ignore[union-attr]
    return group


def wait_for_group(child: Child, size: int) -> list[int]:
    """The child's group once it has `size` processes (or after 20 s)."""
    deadline = time.monotonic() + 20
    while len(group_pids(child.pid)) < size and time.monotonic() < deadline:
        time.sleep(0.05)
    return group_pids(child.pid)


def test_stop_kills_the_group_of_a_dead_leader(child: Child) -> None:
    child.start()
    assert len(sigkill_leader(child)) == 2
    assert len(group_pids(child.pid)) == 1  # the grandchild outlives its parent
    child.stop(grace=2)
    assert group_pids(child.pid) == []  # the orphan went with it


def test_crash_restart_backoff_and_give_up(child: Child) -> None:
    said: list[str] = []
    sup = Supervisor([Supervised(child)], said.append, POLICY)
    sup.start()
    first = child.pid
    sigkill_leader(child)
    t0 = child.started_at + 10
    sup.tick(t0)
    assert said[-1] == (f"worker exited (signal 9 (SIGKILL)); restarting in 1 s (crash 1 of 3 "
                        f"in 10 min); its log: {child.log}")
    assert group_pids(first) == []  # killed before the restart
    sup.tick(t0 + 0.5)
    assert not child.alive()  # backoff
    sup.tick(t0 + 1)
    assert child.alive() and child.pid != first
    assert said[-1] == f"worker restarted (pid {child.pid})"
    sup.tick(t0 + 2)
    assert said[-1] == "worker is back, 2 s after it exited"
    sigkill_leader(child)
    sup.tick(t0 + 3)
    assert "restarting in 2 s (crash 2 of 3 in 10 min)" in said[-1]
    sup.tick(t0 + 5)
    sigkill_leader(child)
    with pytest.raises(GaveUpError, match=r"worker exited .*, 3 times in 10 min; giving up"):
        sup.tick(t0 + 6)


def test_crashes_are_forgotten_after_a_healthy_run(child: Child) -> None:
    said: list[str] = []
    item = Supervised(child, crashes=[1.0, 2.0])
    sup = Supervisor([item], said.append, POLICY)
    sup.start()
    sigkill_leader(child)
    sup.tick(child.started_at + POLICY.healthy_after_s + 1)
    assert "restarting in 1 s (crash 1 of 3" in said[-1]


def test_restart_waits_for_the_port(child: Child) -> None:
    said: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = ("127.0.0.1", taken.getsockname()[1])
        sup = Supervisor([Supervised(child, port=port)], said.append, POLICY)
        sup.start()
        sigkill_leader(child)
        t0 = child.started_at + 10
        sup.tick(t0)
        sup.tick(t0 + 2)
        assert not child.alive()  # its port is still taken
        with pytest.raises(GaveUpError, match="still taken"):
            sup.tick(t0 + 1 + POLICY.port_wait_s + 1)
    sup.tick(t0 + 1 + POLICY.port_wait_s + 1)
    assert child.alive()


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(None) == "exit code None"
