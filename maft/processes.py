"""Child processes of the product's launchers (`maft up`, the experiment, tests, benchmarks).

One way to start a service: in its own session (so a signal reaches the whole process group,
vLLM's engine processes included), logging to a file, and one way to wait for it: poll a
readiness check, failing with the log's tail as soon as the process dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from maft.exceptions import ChildExitedError, ChildNotReadyError

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def service_argv(module: str, *args: str) -> list[str]:
    """`python -m <module> <args>` with this interpreter (no dependency on PATH)."""
    return [sys.executable, "-m", module, *args]


def inference_argv() -> list[str]:
    """The inference service (vLLM configured from MAFT_* settings), run as a process: the
    launchers never import another service."""
    return service_argv("services.inference", "serve")


def materialize_default_model(dest: Path) -> Path:
    """SmolLM2-135M-Instruct as an HF folder at `dest`, written once by the inference service's
    own command (about 30 s; later calls return at once)."""
    subprocess.run(service_argv("services.inference", "materialize", "--dest", str(dest)),
                   check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    return dest


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now (as servers do, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def group_pids(pgid: int) -> list[int]:
    """Running (not zombie) processes of process group `pgid`, from /proc (Linux)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # Fields after "(comm)": state, ppid, pgrp (comm may hold spaces and parentheses).
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            pids.append(int(entry.name))
    return pids


def clean_env(**settings: object) -> dict[str, str]:
    """This process's environment without its MAFT_* variables, plus `settings` as MAFT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAFT_")}
    env.update({f"MAFT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether GET `url` answers 200."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class Child:
    """A service process in its own session, logging to `log` (appended)."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    log: Path
    cwd: Path = REPO_ROOT
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0
    _out: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> Child:
        """Start it (own session: Ctrl-C reaches only the launcher, which stops it); again after
        it exited, for a restart."""
        if self._out:
            self._out.close()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=dict(self.env),
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        if self.proc is None:
            raise ChildExitedError(self.name, None, "never started")
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the whole process group (its children included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def group_running(self) -> bool:
        """Whether the process or any process of its group still runs."""
        if self.proc is None:
            return False
        return self.proc.poll() is None or bool(group_pids(self.proc.pid))

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; returns once the whole
        group is gone. The group is signalled even when the process itself has exited: vLLM's
        engine processes, or Celery's pool and beat, outlive a SIGKILLed parent."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if not self.group_running():
                break
            self.signal_group(sig)
            deadline = time.monotonic() + wait
            while self.group_running() and time.monotonic() < deadline:
                time.sleep(0.1)
        if self._out:
            self._out.close()
            self._out = None

    def kill(self) -> None:
        """SIGKILL the whole process group now."""
        self.stop(grace=0.0)

    def tail(self, lines: int = 40) -> str:
        """The end of its log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, poll: float = 0.5) -> float:
        """Poll `ready()` until true; seconds since start. ChildExitedError if the process dies
        first (with its log's tail), ChildNotReadyError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc is not None else None
                raise ChildExitedError(self.name, code, self.tail())
            if ready():
                return time.monotonic() - self.started_at
            time.sleep(poll)
        raise ChildNotReadyError(f"{self.name} not ready after {timeout:.0f} s; last lines of "
                                 f"{self.log}:\n{self.tail()}")
