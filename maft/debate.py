"""One multi-agent debate (method.md): N agents, M rounds, optional summarizer, majority vote.

Round 1: generation agent n answers alone. Round m >= 2: critic agent n continues agent n's own
conversation with a user turn carrying the *previous round's* responses of the other agents (or
a summary of them by the base model). The final answer is the majority vote of round M.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from maft.enums import Role
from maft.exceptions import DebateFailedError, InferenceError, SocietyTooSmallError
from maft.inference_client import ChatBackend, Completion, Sampling
from maft.tasks.base import Message, Task
from maft.voting import Vote, majority_vote

MAX_AGENTS, MAX_ROUNDS = 8, 4
MAX_ANSWER_CHARS = 200  # the stored columns' length (maft.db.models.ANSWER_CHARS)


@dataclass(frozen=True)
class DebateConfig:
    """Shape of a debate."""

    agents: int = 3
    rounds: int = 2
    summarize: bool = False
    sampling: Sampling = field(default_factory=Sampling)

    def __post_init__(self) -> None:
        if not 1 <= self.agents <= MAX_AGENTS:
            raise ValueError(f"agents must be between 1 and {MAX_AGENTS}")
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise ValueError(f"rounds must be between 1 and {MAX_ROUNDS}")


@dataclass(frozen=True)
class Roster:
    """Which model plays each role: a lora_name per agent, the base model as summarizer."""

    society_version: int
    generators: tuple[str, ...]
    critics: tuple[str, ...]
    summarizer: str

    @classmethod
    def base(cls, base_model_name: str, agents: int = MAX_AGENTS, version: int = 0) -> Roster:
        """Every agent is the base model (society v0)."""
        names = (base_model_name,) * agents
        return cls(version, names, names, base_model_name)

    def check(self, agents: int) -> None:
        """Raise SocietyError if this roster cannot field `agents` agents."""
        have = min(len(self.generators), len(self.critics))
        if agents > have:
            raise SocietyTooSmallError(f"society v{self.society_version} has {have} agents; "
                               f"ask for at most {have}")


@dataclass
class Turn:
    """One model call of a debate with its parsed answer."""

    round: int
    agent_index: int
    role: Role
    lora_name: str
    messages: list[Message]
    text: str
    answer: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str | None = None


@dataclass
class DebateOutcome:
    """All turns of a finished debate and the vote of its last round."""

    turns: list[Turn]
    vote: Vote

    @property
    def final_answer(self) -> str | None:
        """The majority answer of the last round."""
        return self.vote.answer

    @property
    def consensus(self) -> float:
        """Fraction of agents whose last-round answer is the majority answer."""
        return self.vote.consensus


class DebateListener:
    """Hooks called as a debate progresses (persistence, streaming). No-ops by default."""

    async def turn_done(self, turn: Turn) -> None:
        """A model call finished."""

    async def round_done(self, round_no: int, turns: list[Turn], vote: Vote) -> None:
        """Every agent of a round answered; `vote` is that round's majority."""


def conversation(turn: Turn) -> list[Message]:
    """The turn's messages followed by its own response."""
    return [*turn.messages, {"role": "assistant", "content": turn.text}]


class Debate:
    """Runs one debate against a ChatBackend."""

    def __init__(self, *, task: Task, config: DebateConfig, roster: Roster,
                 backend: ChatBackend, listener: DebateListener | None = None) -> None:
        roster.check(config.agents)
        self.task, self.config, self.roster, self.backend = task, config, roster, backend
        self.listener = listener or DebateListener()
        self.turns: list[Turn] = []
        self.question = ""

    async def _call(self, round_no: int, index: int, role: Role, model: str,
                    messages: list[Message]) -> Turn:
        done: Completion = await self.backend.chat(model=model, messages=messages,
                                                   sampling=self.config.sampling)
        answer = None if role == Role.SUMMARIZER else self.task.parse(done.text)
        if answer is not None and len(answer) > MAX_ANSWER_CHARS:
            answer = None  # no task's answer is that long: it is a runaway parse, not a vote
        turn = Turn(round_no, index, role, model, messages, done.text, answer,
                    done.prompt_tokens, done.completion_tokens, done.latency_ms,
                    done.finish_reason)
        self.turns.append(turn)
        await self.listener.turn_done(turn)
        return turn

    async def _gather(self, calls: Sequence[tuple[int, Role, str, list[Message]]],
                      round_no: int) -> list[Turn]:
        tasks = [asyncio.ensure_future(self._call(round_no, i, role, model, msgs))
                 for i, role, model, msgs in calls]
        try:  # the first failure ends the round: its siblings' requests are cancelled
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:  # also when this debate is cancelled (client gone, timeout): close them all
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        failures = [t.exception() for t in tasks if not t.cancelled() and t.exception()]
        for failure in failures:
            if isinstance(failure, InferenceError):
                raise DebateFailedError(failure, list(self.turns)) from failure
        if failures:
            raise failures[0]  # type: ignore[misc]
        return [t.result() for t in tasks]

    async def _critic_inputs(self, round_no: int, previous: list[Turn]) -> list[Message]:
        texts = [t.text for t in previous]
        others = [[t for j, t in enumerate(texts) if j != n] for n in range(len(texts))]
        if not self.config.summarize:
            return [self.task.critic_message(o) for o in others]
        calls = [(n, Role.SUMMARIZER, self.roster.summarizer,
                  self.task.summarizer_messages(self.question, o)) for n, o in enumerate(others)]
        summaries = await self._gather(calls, round_no)
        return [self.task.critic_summary_message(s.text) for s in summaries]

    async def run(self, question: str) -> DebateOutcome:
        """Debate `question`; DebateFailedError (with the partial turns) if inference fails."""
        n, self.question = self.config.agents, question
        first = self.task.generation_messages(question)
        calls = [(i, Role.GENERATOR, self.roster.generators[i], list(first)) for i in range(n)]
        current = await self._gather(calls, 1)
        vote = await self._close_round(1, current)
        for round_no in range(2, self.config.rounds + 1):
            advice = await self._critic_inputs(round_no, current)
            calls = [(i, Role.CRITIC, self.roster.critics[i],
                      [*conversation(current[i]), advice[i]])
                     for i in range(n)]
            current = await self._gather(calls, round_no)
            vote = await self._close_round(round_no, current)
        return DebateOutcome(turns=list(self.turns), vote=vote)

    async def _close_round(self, round_no: int, turns: list[Turn]) -> Vote:
        vote = majority_vote([t.answer for t in turns], self.task.equivalent)
        await self.listener.round_done(round_no, turns, vote)
        return vote


async def run_debate(question: str, *, task: Task, config: DebateConfig, roster: Roster,
                     backend: ChatBackend, listener: DebateListener | None = None
                     ) -> DebateOutcome:
    """Run one debate (see Debate)."""
    debate = Debate(task=task, config=config, roster=roster, backend=backend, listener=listener)
    return await debate.run(question)
