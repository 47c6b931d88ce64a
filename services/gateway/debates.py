"""Running a debate for the API: validate, pin the active society, run, store every turn."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from maft.db import crud
from maft.db.models import Debate
from maft.debate import (
    MAX_ANSWER_CHARS,
    DebateConfig,
    DebateListener,
    Roster,
    Turn,
    run_debate,
)
from maft.enums import DebateStatus
from maft.exceptions import (
    DebateFailedError,
    InferenceError,
    InferenceTimeoutError,
    InvalidTaskOptionError,
    PromptTooLongError,
)
from maft.inference_client import ChatBackend, Sampling
from maft.prompt_budget import largest_prompts
from maft.tasks import Task, get_task
from maft.tasks.base import Message
from maft.voting import Vote
from services.gateway.admission import Admission, Release
from services.gateway.metrics import observe_debate
from services.gateway.settings import GatewaySettings

T = TypeVar("T")
log = logging.getLogger("maft.gateway")
ABANDONED = "abandoned: the client closed the connection before the debate ended"


class PromptCounter(Protocol):
    """Counts a chat prompt's tokens as the served model sees them (vLLM's /tokenize)."""

    async def prompt_tokens(self, *, model: str, messages: list[Message]) -> tuple[int, int]:
        """(prompt tokens, the model's context length)."""
        ...


@dataclass(frozen=True)
class DebateRequest:
    """A validated debate request with defaults filled in."""

    question: str
    task: Task
    config: DebateConfig
    reference_answer: str | None
    source: str = "api"
    api_key_id: uuid.UUID | None = None


class Store:
    """Runs data-access functions in short transactions off the event loop."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def _sync(self, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
        with self.sessions() as db, db.begin():
            return fn(db, **kwargs)

    async def call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        """`fn(session, **kwargs)` in its own transaction, in a worker thread."""
        return await run_in_threadpool(self._sync, fn, kwargs)


def build_request(settings: GatewaySettings, *, question: str, task: str | None,
                  agents: int | None, rounds: int | None, summarize: bool | None,
                  temperature: float | None, top_p: float | None, max_tokens: int | None,
                  reference_answer: object = None, source: str = "api",
                  api_key_id: uuid.UUID | None = None) -> DebateRequest:
    """Fill defaults and validate; UnknownTaskError / InvalidTaskOptionError on bad input."""
    task_obj = get_task(task or settings.default_task, **task_options(settings, task))
    sampling = Sampling(
        temperature=settings.default_temperature if temperature is None else temperature,
        top_p=settings.default_top_p if top_p is None else top_p,
        max_tokens=max_tokens or settings.default_max_tokens)
    config = DebateConfig(agents=agents or settings.default_agents,
                          rounds=rounds or settings.default_rounds,
                          summarize=bool(summarize), sampling=sampling)
    reference = None if reference_answer is None else stored_answer(task_obj, reference_answer)
    return DebateRequest(question, task_obj, config, reference, source, api_key_id)


def stored_answer(task: Task, raw: object) -> str:
    """The task's normal form of an answer; InvalidTaskOptionError if it outgrows the column
    (1e300 is 5 characters, its normal form 301)."""
    text = task.normalize_reference(str(raw))
    if len(text) > MAX_ANSWER_CHARS:
        raise InvalidTaskOptionError(f"the answer's normal form has {len(text)} characters; "
                                     f"at most {MAX_ANSWER_CHARS} can be stored")
    return text


def task_options(settings: GatewaySettings, task: str | None) -> dict[str, object]:
    """Options the gateway passes to a task (its dataset file, when configured)."""
    path = {"gsm8k": settings.gsm8k_path, "math": settings.math_path}.get(task or "")
    return {"path": path} if path else {}


class PersistingListener(DebateListener):
    """Stores each turn as it completes, then forwards events to an optional listener."""

    def __init__(self, store: Store, debate_id: uuid.UUID, forward: DebateListener | None):
        self.store, self.debate_id, self.forward = store, debate_id, forward

    async def turn_done(self, turn: Turn) -> None:
        """Store the turn."""
        await self.store.call(crud.add_response, debate_id=self.debate_id, turn=turn)
        if self.forward:
            await self.forward.turn_done(turn)

    async def round_done(self, round_no: int, turns: list[Turn], vote: Vote) -> None:
        """Forward the round."""
        if self.forward:
            await self.forward.round_done(round_no, turns, vote)


def _pin_society(db: Session, *, agents: int) -> Roster:
    roster = crud.roster_of(crud.active_society(db))
    roster.check(agents)
    return roster


class DebateService:
    """Checks, admits, starts and runs debates; one instance per app."""

    def __init__(self, *, store: Store, backend: ChatBackend, settings: GatewaySettings,
                 admission: Admission | None = None, counter: PromptCounter | None = None):
        self.store, self.backend, self.settings = store, backend, settings
        self.admission = admission or Admission.from_settings(settings)
        self.counter, self._warned_at = counter, -1e9

    async def check_fits(self, request: DebateRequest) -> None:
        """PromptTooLongError unless the debate's largest prompts plus max_tokens fit the
        model's context (maft.prompt_budget states the rule). Skipped, with a log line, when
        inference cannot count: the debate then fails (and is stored) as before."""
        if self.counter is None:
            return
        budget = request.config.sampling.max_tokens
        for messages in largest_prompts(request.task, request.question, request.config):
            try:
                tokens, context = await self.counter.prompt_tokens(
                    model=self.settings.base_model_name, messages=messages)
            except InferenceError as exc:
                self._unchecked(exc)
                return
            if tokens + budget > context:
                raise PromptTooLongError(
                    f"the debate does not fit the model's context of {context} tokens: its "
                    f"largest prompt (round {request.config.rounds}, every earlier answer "
                    f"taken as max_tokens={budget} tokens) is {tokens} tokens, plus {budget} "
                    "to generate; shorten the question or lower max_tokens, agents or rounds")

    def _unchecked(self, exc: InferenceError) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:  # one line a minute, not one per debate
            self._warned_at = now
            log.warning("prompt lengths not checked: %s", exc)

    async def open(self, request: DebateRequest) -> tuple[uuid.UUID, Roster, Release]:
        """Check the prompt, take a slot (OverloadedError if none), record the debate."""
        await self.check_fits(request)
        release = await self.admission.acquire()
        try:
            debate_id, roster = await self.start(request)
        except BaseException:
            release()
            raise
        return debate_id, roster, release

    async def serve(self, request: DebateRequest) -> Debate:
        """A whole debate within admission control."""
        debate_id, roster, release = await self.open(request)
        try:
            return await self.run(request, debate_id, roster)
        finally:
            release()

    async def start(self, request: DebateRequest) -> tuple[uuid.UUID, Roster]:
        """Pin the active society and record the debate as running."""
        roster = await self.store.call(_pin_society, agents=request.config.agents)
        debate = await self.store.call(
            crud.create_debate, question=request.question, task=request.task.name,
            config=request.config, society_version=roster.society_version,
            reference_answer=request.reference_answer, source=request.source,
            api_key_id=request.api_key_id)
        return debate.id, roster

    async def _fail(self, request: DebateRequest, debate_id: uuid.UUID, error: str,
                    start: float) -> None:
        elapsed = (time.perf_counter() - start) * 1000
        # Shielded: a cancelled debate is still recorded as failed, never left 'running'.
        await asyncio.shield(self.store.call(crud.fail_debate, debate_id=debate_id,
                                             error=error, latency_ms=elapsed))
        observe_debate(request.task.name, DebateStatus.FAILED, None)

    async def run(self, request: DebateRequest, debate_id: uuid.UUID, roster: Roster,
                  listener: DebateListener | None = None) -> Debate:
        """Run a started debate to the end; DebateFailedError after storing it as failed.
        Cancelled (client gone), it is stored as failed and the cancellation goes on."""
        start = time.perf_counter()
        persist = PersistingListener(self.store, debate_id, listener)
        try:
            outcome = await asyncio.wait_for(
                run_debate(request.question, task=request.task, config=request.config,
                           roster=roster, backend=self.backend, listener=persist),
                timeout=self.settings.debate_timeout_s)
        except asyncio.CancelledError:
            await self._fail(request, debate_id, ABANDONED, start)
            raise
        except (DebateFailedError, TimeoutError) as exc:
            failure = exc if isinstance(exc, DebateFailedError) else DebateFailedError(
                InferenceTimeoutError(f"debate exceeded {self.settings.debate_timeout_s:.0f} s"),
                [])
            failure.debate_id = debate_id
            await self._fail(request, debate_id, str(failure), start)
            raise failure from exc
        elapsed = (time.perf_counter() - start) * 1000
        await self.store.call(crud.finish_debate, debate_id=debate_id, outcome=outcome,
                              latency_ms=elapsed)
        observe_debate(request.task.name, DebateStatus.COMPLETED, elapsed / 1000)
        return await self.store.call(crud.get_debate, debate_id=debate_id)


__all__ = ["DebateRequest", "DebateService", "InvalidTaskOptionError", "Store", "build_request"]
