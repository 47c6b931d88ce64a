"""Progress bars with ETA (rich) that also leave plain log lines when not on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bars:
    """One rich Progress for the whole run; `bar(...)` yields a (done, total, loss?) callback."""

    def __init__(self, console: Console | None = None, log_every_s: float = 60.0) -> None:
        self.console = console or Console()
        self.log_every_s = log_every_s
        self._ids: dict[str, TaskID] = {}
        self.progress = Progress(TextColumn("{task.description:<34}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=False)

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def log(self, message: str) -> None:
        """A timestamped line above the bars."""
        self.console.log(message)

    @contextmanager
    def bar(self, description: str, total: int = 0
            ) -> Iterator[Callable[..., None]]:
        """A bar for one phase; the callback takes (done, total, loss=None)."""
        update = self.tracker(description, total)
        try:
            yield update
        finally:
            self.progress.update(self._ids[description], visible=self.console.is_terminal)

    def tracker(self, description: str, total: int = 0) -> Callable[..., None]:
        """A bar that stays; returns its (done, total, loss=None) callback."""
        task = self.progress.add_task(description, total=total or None, note="")
        self._ids[description] = task
        start, last = time.monotonic(), [0.0]

        def update(done: int, total: int, loss: float | None = None) -> None:
            note = f"loss {loss:.3f}" if loss is not None else ""
            self.progress.update(task, completed=done, total=total, note=note)
            now = time.monotonic()
            if not self.console.is_terminal and (now - last[0] > self.log_every_s
                                                 or done == total):
                last[0] = now
                eta = (now - start) / done * (total - done) if done else float("nan")
                self.log(f"{description}: {done}/{total} {note} eta {eta:.0f}s")

        return update
