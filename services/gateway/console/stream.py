"""A debate, round by round, as it runs: server-sent events of rendered HTML fragments.

The database is the truth (every turn is stored before its round is announced), so a stream
re-reads the debate whenever this process's debate announces a round, and once a second
otherwise (a debate started by another gateway replica streams too, a little later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import Request

from maft.db import crud
from maft.db.models import Debate
from maft.debate import DebateListener, Roster, Turn
from maft.exceptions import DebateFailedError
from maft.voting import Vote
from services.gateway.console import views
from services.gateway.debates import DebateRequest, DebateService, Store

log = logging.getLogger(__name__)
POLL_S = 1.0


class Hub:
    """Wakes the streams of a debate when one of its rounds ends (or the debate does)."""

    def __init__(self) -> None:
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)

    def notify(self, debate_id: uuid.UUID) -> None:
        """Something changed in this debate."""
        for event in self._waiters.get(debate_id, ()):
            event.set()

    @contextlib.contextmanager
    def watch(self, debate_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set on each change of the debate, while the block runs."""
        event = asyncio.Event()
        self._waiters[debate_id].add(event)
        try:
            yield event
        finally:
            self._waiters[debate_id].discard(event)
            if not self._waiters[debate_id]:
                del self._waiters[debate_id]


class _Announce(DebateListener):
    def __init__(self, hub: Hub, debate_id: uuid.UUID) -> None:
        self.hub, self.debate_id = hub, debate_id

    async def round_done(self, round_no: int, turns: list[Turn], vote: Vote) -> None:
        """The round's turns are stored: wake its streams."""
        self.hub.notify(self.debate_id)


async def drive(service: DebateService, request: DebateRequest, debate_id: uuid.UUID,
                roster: Roster, hub: Hub, release: Callable[[], None]) -> None:
    """Run an admitted debate to its end in the background, announcing each round; then give
    its admission slot back."""
    try:
        await service.run(request, debate_id, roster, listener=_Announce(hub, debate_id))
    except DebateFailedError:
        pass  # stored as failed, with its error: the stream shows it
    except Exception:  # nobody awaits this task: say what happened
        log.exception("console debate %s crashed", debate_id)
    finally:
        release()
        hub.notify(debate_id)


def event(name: str, html: str, event_id: str | None = None) -> str:
    """One server-sent event whose data is an HTML fragment."""
    lines = [f"event: {name}", *([f"id: {event_id}"] if event_id else [])]
    lines += [f"data: {line}" for line in html.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


Renderer = Callable[[str, dict[str, Any]], str]


async def debate_events(request: Request, store: Store, hub: Hub, debate_id: uuid.UUID,
                        render: Renderer, owner: uuid.UUID | None) -> AsyncIterator[str]:
    """`round` events as rounds complete, then one `done` event with the outcome."""
    sent = int(request.headers.get("Last-Event-ID") or 0)  # a reconnecting browser has these
    with hub.watch(debate_id) as changed:
        while not await request.is_disconnected():
            changed.clear()
            debate: Debate = await store.call(crud.get_debate, debate_id=debate_id,
                                              owner=owner)
            live = views.running(debate)
            for row in views.rounds(debate, complete_only=live)[sent:]:
                yield event("round", render("_round.html", {"debate": debate, "round": row}),
                            str(row.number))
                sent = row.number
            if not live:
                yield event("done", render("_final.html", {"debate": debate}))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL_S)
