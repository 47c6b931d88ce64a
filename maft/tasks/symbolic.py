"""Symbolic equivalence of LaTeX answers by math-verify, in bounded time, never raising.

math-verify (on sympy) can take forever on a pathological answer (`10^{10^{10}}`, `(10^8)!`)
and its own timeouts use signal.alarm, which works only in the main thread and cancels any
other alarm. So its timeouts stay off and this module bounds each comparison itself: in the
main thread with an alarm of its own (an earlier alarm is kept), elsewhere in a worker process
that is killed when late. Any failure, exception or timeout means "not equivalent".
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TIME_LIMIT_S = 5.0  # per comparison; MATH answers take milliseconds, but on a busy machine...
MAX_ANSWER_CHARS = 500  # longer answers compare as text only: parsing them is the slow part
WORKER_WAIT_S = 30.0  # > TIME_LIMIT_S: the worker's alarm stops it first; + start-up


class _OutOfTime(BaseException):
    """The alarm's exception: a BaseException, so math-verify's `except Exception` lets it by."""


def same_text(a: str, b: str) -> bool:
    """Equal up to whitespace: the cheap path, and the only one for over-long answers."""
    return " ".join(a.split()) == " ".join(b.split())


class _QuietTimeoutNotice(logging.Filter):
    """Drops math-verify's notice that its own timeouts are off: ours replace them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


@cache
def _math_verify() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """math-verify's parse and verify, imported on first use (sympy takes ~0.3 s to import)."""
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_QuietTimeoutNotice())
    # The first parse and simplification set up the LaTeX grammar and sympy's caches (~1 s):
    # done here, that one-off cost is not charged to the first comparison's time limit.
    warm = [math_verify.parse(t, parsing_timeout=None) for t in (r"\boxed{\frac{x^2-1}{x-1}}",
                                                                  r"\boxed{x+1}")]
    math_verify.verify(*warm, timeout_seconds=None)
    return math_verify.parse, math_verify.verify


@lru_cache(maxsize=4096)
def _parsed(answer: str) -> list[Any]:
    """math-verify's readings of an answer (its boxed form parses most LaTeX); [] if none."""
    parse, _ = _math_verify()
    # math-verify's own timeouts are off: its signal.alarm would cancel any outer alarm.
    return list(parse("\\boxed{" + answer + "}", parsing_timeout=None))


def _verified(a: str, b: str) -> bool:
    """Symbolic equivalence both ways round (verify is not symmetric: gold comes first)."""
    _, verify = _math_verify()
    pa, pb = _parsed(a), _parsed(b)
    if not pa or not pb:
        return False
    return bool(verify(pb, pa, timeout_seconds=None) or verify(pa, pb, timeout_seconds=None))


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise _OutOfTime in the block after `seconds` (main thread only); keep an outer alarm."""
    def expire(signum: int, frame: object) -> None:
        raise _OutOfTime

    outer, _ = signal.getitimer(signal.ITIMER_REAL)  # a caller's alarm (pytest-timeout's...)
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer) if outer else seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))


def verified_in_time(a: str, b: str, limit: float | None = None) -> bool:
    """_verified under an alarm (`limit`, default TIME_LIMIT_S seconds); late or failed is False."""
    _math_verify()  # the import is not the comparison's time
    try:
        with _deadline(limit or TIME_LIMIT_S):
            return _verified(a, b)
    except _OutOfTime:
        log.debug("math equivalence timed out: %.80r vs %.80r", a, b)
    except Exception:
        log.debug("math equivalence failed: %.80r vs %.80r", a, b, exc_info=True)
    return False


class _Worker:
    """A child process comparing answers for threads other than the main one.

    Off the main thread no alarm can interrupt sympy, so the comparison runs in a process
    (its own main thread, with the alarm) that can be killed when late. A plain subprocess
    rather than multiprocessing: spawning that re-imports the caller's __main__ module.
    """

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from maft.tasks.symbolic import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env)

    def ask(self, a: str, b: str, wait: float) -> bool:
        """The worker's verdict on a pair; TimeoutError or EOFError when it has none."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps([a, b, TIME_LIMIT_S]) + "\n")
        stdin.flush()
        if not select.select([stdout], [], [], wait)[0]:
            raise TimeoutError(f"no verdict in {wait} s")
        line = stdout.readline()
        if not line:
            raise EOFError("math equivalence worker exited")
        return line.strip() == "1"

    def stop(self) -> None:
        """End the process (at once: a worker that failed once is not trusted again)."""
        self.process.kill()
        self.process.wait()


_worker: _Worker | None = None
_worker_lock = threading.Lock()  # one question at a time on the worker's pipes


def serve() -> None:
    """The worker's loop: a JSON [a, b, limit] line in, "1" or "0" out, until stdin closes."""
    out, sys.stdout = sys.stdout, sys.stderr  # a stray print must not pass for a verdict
    for line in sys.stdin:
        a, b, limit = json.loads(line)
        out.write("1\n" if verified_in_time(a, b, limit) else "0\n")
        out.flush()


@atexit.register
def _stop_worker() -> None:
    """End the worker with this process."""
    global _worker
    with _worker_lock:
        if _worker is not None:
            _worker.stop()
            _worker = None


def verified_in_worker(a: str, b: str) -> bool:
    """verified_in_time in the worker process, which is killed if it does not answer in time."""
    global _worker
    with _worker_lock:
        try:
            _worker = _worker or _Worker()
            return _worker.ask(a, b, WORKER_WAIT_S)
        except (OSError, ValueError, EOFError) as exc:  # TimeoutError is an OSError
            log.warning("math equivalence worker failed (%s): %.80r vs %.80r differ", exc, a, b)
            if _worker is not None:
                _worker.stop()
            _worker = None
            return False


def math_equivalent(a: str, b: str) -> bool:
    """Whether two math answers are the same: equal text, else symbolically (math-verify)."""
    if same_text(a, b):
        return True
    if max(len(a), len(b)) > MAX_ANSWER_CHARS or not a.strip() or not b.strip():
        return False
    if threading.current_thread() is threading.main_thread():
        return verified_in_time(a, b)
    return verified_in_worker(a, b)
