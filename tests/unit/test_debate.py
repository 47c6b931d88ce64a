"""Debate orchestration (maft/debate.py) against a fake ChatBackend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from maft.debate import (
    MAX_AGENTS,
    MAX_ROUNDS,
    Debate,
    DebateConfig,
    DebateListener,
    DebateOutcome,
    Roster,
    Turn,
    run_debate,
)
from maft.exceptions import DebateFailedError, InferenceError, SocietyError
from maft.inference_client import Completion, Sampling
from maft.tasks import NumericTask
from maft.tasks.base import Message
from maft.voting import Vote

QUESTION = "What is the result of 3+4*5?"
BASE = "base-model"


def roster(agents: int = 3, version: int = 2) -> Roster:
    return Roster(version, tuple(f"gen-{i}" for i in range(agents)),
                  tuple(f"crit-{i}" for i in range(agents)), BASE)


def agent_of(model: str) -> int:
    return int(model.rsplit("-", 1)[1])


def round_of(messages: list[Message]) -> int:
    """Round of an agent call: one assistant turn per earlier round."""
    return 1 + sum(m["role"] == "assistant" for m in messages)


def default_answer(agent: int, round_no: int) -> int:
    return 100 * round_no + agent


@dataclass
class Call:
    model: str
    messages: list[Message]
    sampling: Sampling


class FakeBackend:
    """Answers `[<model> r<round>] ... \\boxed{<answer>}` (a digit-free text for a None answer);
    records calls and concurrency.

    With `parties`, every call waits at an asyncio.Barrier of that size: a debate that issued
    the calls of a round one after the other would time out there instead of completing.
    """

    def __init__(self, answer: Callable[[int, int], object] = default_answer, *,
                 parties: int | None = None,
                 fail: Callable[[str, list[Message]], BaseException | None] | None = None
                 ) -> None:
        self.answer, self.fail = answer, fail
        self.calls: list[Call] = []
        self.in_flight = self.max_in_flight = 0
        self.barrier = asyncio.Barrier(parties) if parties else None
        self.summaries = 0

    async def chat(self, *, model: str, messages: list[Message], sampling: Sampling
                   ) -> Completion:
        self.calls.append(Call(model, [dict(m) for m in messages], sampling))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.barrier is not None:
                async with asyncio.timeout(2):
                    await self.barrier.wait()
            else:
                await asyncio.sleep(0)
            error = self.fail(model, messages) if self.fail else None
            if error is not None:
                raise error
            if model == BASE:
                self.summaries += 1
                text = f"SUMMARY#{self.summaries} of {len(messages[0]['content'])} chars"
            else:
                r = round_of(messages)
                answer = self.answer(agent_of(model), r)
                text = (f"[{model} r{r}] step by step UNIQUE-{model}-r{r} "
                        f"\\boxed{{{answer}}}") if answer is not None else "No idea, sorry."
            return Completion(text=text, prompt_tokens=10, completion_tokens=5,
                              finish_reason="stop", latency_ms=1.5)
        finally:
            self.in_flight -= 1


class RecordingListener(DebateListener):
    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.rounds: list[tuple[int, list[Turn], Vote]] = []

    async def turn_done(self, turn: Turn) -> None:
        self.turns.append(turn)

    async def round_done(self, round_no: int, turns: list[Turn], vote: Vote) -> None:
        self.rounds.append((round_no, list(turns), vote))


async def debate(backend: FakeBackend, *, agents: int = 3, rounds: int = 2,
                 summarize: bool = False, listener: DebateListener | None = None,
                 sampling: Sampling | None = None) -> DebateOutcome:
    config = DebateConfig(agents=agents, rounds=rounds, summarize=summarize,
                          sampling=sampling or Sampling())
    return await run_debate(QUESTION, task=NumericTask(), config=config, roster=roster(agents),
                            backend=backend, listener=listener)


def agent_turns(turns: list[Turn]) -> dict[tuple[int, int], Turn]:
    found = {(t.round, t.agent_index): t for t in turns if t.role != "summarizer"}
    assert len(found) == sum(t.role != "summarizer" for t in turns)  # no duplicates
    return found


# -- roles and models -------------------------------------------------------------------------


async def test_generators_in_round_one_critics_after() -> None:
    backend = FakeBackend()
    outcome = await debate(backend, agents=3, rounds=3)
    turns = agent_turns(outcome.turns)
    assert set(turns) == {(r, i) for r in (1, 2, 3) for i in range(3)}
    for (r, i), turn in turns.items():
        if r == 1:
            assert (turn.role, turn.lora_name) == ("generator", f"gen-{i}")
        else:
            assert (turn.role, turn.lora_name) == ("critic", f"crit-{i}")
    models = [c.model for c in backend.calls]
    assert sorted(models[:3]) == ["gen-0", "gen-1", "gen-2"]
    assert sorted(models[3:]) == ["crit-0", "crit-0", "crit-1", "crit-1", "crit-2", "crit-2"]
    assert BASE not in models  # no summarizer unless asked


async def test_round_one_prompt_is_the_generation_prompt() -> None:
    backend = FakeBackend()
    outcome = await debate(backend, agents=2, rounds=1)
    expected = NumericTask().generation_messages(QUESTION)
    assert all(c.messages == expected for c in backend.calls)
    assert len(outcome.turns) == 2
    assert all(t.messages == expected for t in outcome.turns)


async def test_turn_records_the_completion() -> None:
    outcome = await debate(FakeBackend(), agents=2, rounds=2)
    turn = agent_turns(outcome.turns)[(2, 1)]
    assert turn.answer == "201"
    assert turn.text.startswith("[crit-1 r2]")
    assert (turn.prompt_tokens, turn.completion_tokens, turn.latency_ms) == (10, 5, 1.5)
    assert turn.finish_reason == "stop"


async def test_sampling_is_passed_to_every_call() -> None:
    backend = FakeBackend()
    sampling = Sampling(temperature=0.3, top_p=0.5, max_tokens=64)
    await debate(backend, rounds=2, summarize=True, sampling=sampling)
    assert backend.calls
    assert all(c.sampling == sampling for c in backend.calls)


# -- conversations ----------------------------------------------------------------------------


async def test_critics_continue_own_conversation_with_previous_round_only() -> None:
    backend = FakeBackend()
    outcome = await debate(backend, agents=3, rounds=3)
    turns = agent_turns(outcome.turns)
    task = NumericTask()
    for i in range(3):
        others = [j for j in range(3) if j != i]
        r2, r3 = turns[(2, i)], turns[(3, i)]
        # round 2: question, own round-1 answer, others' round-1 answers
        assert r2.messages == [
            *task.generation_messages(QUESTION),
            {"role": "assistant", "content": turns[(1, i)].text},
            task.critic_message([turns[(1, j)].text for j in others]),
        ]
        # round 3 continues round 2's conversation, then others' round-2 answers only
        assert r3.messages == [
            *r2.messages,
            {"role": "assistant", "content": r2.text},
            task.critic_message([turns[(2, j)].text for j in others]),
        ]
        last_user = r3.messages[-1]["content"]
        for j in others:
            assert f"UNIQUE-crit-{j}-r2" in last_user
            assert f"UNIQUE-gen-{j}-r1" not in last_user  # rounds are never mixed
        assert f"UNIQUE-crit-{i}-r2" not in last_user  # never its own answer
        assert f"UNIQUE-gen-{i}-r1" not in last_user
        # the assistant turns are this agent's own, in order
        assistants = [m["content"] for m in r3.messages if m["role"] == "assistant"]
        assert assistants == [turns[(1, i)].text, turns[(2, i)].text]


async def test_backend_sees_the_same_messages_as_the_transcript() -> None:
    backend = FakeBackend()
    outcome = await debate(backend, agents=3, rounds=3)
    sent = sorted((c.model, str(c.messages)) for c in backend.calls)
    recorded = sorted((t.lora_name, str(t.messages)) for t in outcome.turns)
    assert sent == recorded


async def test_single_agent_debate_has_no_others() -> None:
    outcome = await debate(FakeBackend(), agents=1, rounds=2)
    turns = agent_turns(outcome.turns)
    assert turns[(2, 0)].messages[-1] == NumericTask().critic_message([])
    assert outcome.final_answer == "200"


# -- summarizer -------------------------------------------------------------------------------


async def test_summarize_calls_base_model_once_per_agent_per_later_round() -> None:
    backend = FakeBackend()
    outcome = await debate(backend, agents=3, rounds=3, summarize=True)
    summary_calls = [c for c in backend.calls if c.model == BASE]
    assert len(summary_calls) == 3 * 2
    summaries = [t for t in outcome.turns if t.role == "summarizer"]
    assert len(summaries) == 6
    assert all(t.lora_name == BASE and t.answer is None for t in summaries)
    assert sorted((t.round, t.agent_index) for t in summaries) == [
        (r, i) for r in (2, 3) for i in range(3)]
    turns = agent_turns(outcome.turns)
    task = NumericTask()
    by_key = {(t.round, t.agent_index): t for t in summaries}
    for r in (2, 3):
        for i in range(3):
            others = [j for j in range(3) if j != i]
            summary = by_key[(r, i)]
            # the summarizer sees the question and the others' previous-round answers
            assert summary.messages == task.summarizer_messages(
                QUESTION, [turns[(r - 1, j)].text for j in others])
            # the critic turn carries that summary, not the raw answers
            critic = turns[(r, i)]
            assert critic.messages[-1] == task.critic_summary_message(summary.text)
            assert "UNIQUE-" not in critic.messages[-1]["content"]
            assert critic.messages[-2] == {"role": "assistant",
                                           "content": turns[(r - 1, i)].text}


async def test_summarizer_prompt_excludes_own_answer() -> None:
    backend = FakeBackend()
    await debate(backend, agents=3, rounds=2, summarize=True)
    prompts = [c.messages[0]["content"] for c in backend.calls if c.model == BASE]
    for i in range(3):
        mine = [p for p in prompts if f"UNIQUE-gen-{i}-r1" not in p]
        assert len(mine) == 1  # exactly one summary leaves agent i out: agent i's own


# -- concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("summarize", [False, True])
async def test_calls_of_a_round_are_concurrent(summarize: bool) -> None:
    backend = FakeBackend(parties=4)
    outcome = await debate(backend, agents=4, rounds=3, summarize=summarize)
    assert backend.max_in_flight == 4
    assert len(backend.calls) == 4 * 3 + (8 if summarize else 0)
    assert outcome.final_answer is not None


async def test_rounds_do_not_overlap() -> None:
    backend = FakeBackend()
    await debate(backend, agents=3, rounds=3)
    rounds = [round_of(c.messages) for c in backend.calls]
    assert rounds == sorted(rounds)
    assert backend.max_in_flight <= 3


# -- the vote ---------------------------------------------------------------------------------


async def test_final_answer_is_the_vote_of_the_last_round() -> None:
    def answer(agent: int, round_no: int) -> object:
        if round_no == 1:
            return 7  # unanimous 7 at first
        return {0: "1,000", 1: 1000.0, 2: 5}[agent]

    listener = RecordingListener()
    outcome = await debate(FakeBackend(answer), agents=3, rounds=2, listener=listener)
    assert outcome.final_answer == "1000"
    assert outcome.vote.votes == 2
    assert outcome.consensus == pytest.approx(2 / 3)
    assert listener.rounds[0][2].answer == "7"
    assert listener.rounds[-1][2] == outcome.vote


async def test_unparseable_final_answers_do_not_vote() -> None:
    def answer(agent: int, round_no: int) -> object:
        return None if agent in (0, 1) else 42

    outcome = await debate(FakeBackend(answer), agents=3, rounds=2)
    assert outcome.final_answer == "42"
    assert outcome.consensus == pytest.approx(1 / 3)


async def test_tie_in_last_round_goes_to_lowest_agent() -> None:
    def answer(agent: int, round_no: int) -> object:
        return [9, 8, 8, 9][agent]

    outcome = await debate(FakeBackend(answer), agents=4, rounds=1)
    assert outcome.final_answer == "9"


# -- config and roster ------------------------------------------------------------------------


@pytest.mark.parametrize(("agents", "rounds"),
                         [(0, 2), (MAX_AGENTS + 1, 2), (3, 0), (3, MAX_ROUNDS + 1), (-1, 1)])
def test_debate_config_ranges(agents: int, rounds: int) -> None:
    with pytest.raises(ValueError):
        DebateConfig(agents=agents, rounds=rounds)


def test_debate_config_limits_and_defaults() -> None:
    assert DebateConfig(agents=1, rounds=1).agents == 1
    assert DebateConfig(agents=MAX_AGENTS, rounds=MAX_ROUNDS).rounds == MAX_ROUNDS
    default = DebateConfig()
    assert (default.agents, default.rounds, default.summarize) == (3, 2, False)
    assert (default.sampling.temperature, default.sampling.top_p) == (1.0, 0.9)


def test_roster_check() -> None:
    r = Roster(4, ("g0", "g1", "g2"), ("c0", "c1"), BASE)
    r.check(1)
    r.check(2)
    with pytest.raises(SocietyError, match="2 agents"):
        r.check(3)


def test_roster_base() -> None:
    r = Roster.base("m", agents=3)
    assert r == Roster(0, ("m", "m", "m"), ("m", "m", "m"), "m")
    Roster.base("m").check(MAX_AGENTS)


def test_debate_refuses_too_small_a_society() -> None:
    with pytest.raises(SocietyError):
        Debate(task=NumericTask(), config=DebateConfig(agents=4), roster=roster(3),
               backend=FakeBackend())


# -- failures ---------------------------------------------------------------------------------


async def test_inference_error_mid_debate_carries_partial_transcript() -> None:
    boom = InferenceError("engine fell over", status_code=500)

    def fail(model: str, messages: list[Message]) -> BaseException | None:
        return boom if model == "crit-1" and round_of(messages) == 2 else None

    listener = RecordingListener()
    with pytest.raises(DebateFailedError) as info:
        await debate(FakeBackend(fail=fail), agents=3, rounds=3, listener=listener)
    error = info.value
    assert error.cause is boom
    assert "engine fell over" in str(error)
    partial = {(t.round, t.agent_index, t.lora_name) for t in error.partial}
    assert partial == {(1, 0, "gen-0"), (1, 1, "gen-1"), (1, 2, "gen-2"),
                       (2, 0, "crit-0"), (2, 2, "crit-2")}
    assert [r for r, _, _ in listener.rounds] == [1]  # round 2 never closed


async def test_inference_error_in_summarizer_fails_the_debate() -> None:
    def fail(model: str, messages: list[Message]) -> BaseException | None:
        return InferenceError("summarizer down") if model == BASE else None

    with pytest.raises(DebateFailedError) as info:
        await debate(FakeBackend(fail=fail), agents=2, rounds=2, summarize=True)
    assert len(info.value.partial) == 2
    assert all(t.round == 1 for t in info.value.partial)


async def test_inference_error_in_first_round() -> None:
    def fail(model: str, messages: list[Message]) -> BaseException | None:
        return InferenceError("nope") if model == "gen-0" else None

    with pytest.raises(DebateFailedError) as info:
        await debate(FakeBackend(fail=fail), agents=3, rounds=2)
    assert sorted(t.agent_index for t in info.value.partial) == [1, 2]


async def test_other_errors_propagate_unchanged() -> None:
    def fail(model: str, messages: list[Message]) -> BaseException | None:
        return RuntimeError("bug") if model == "crit-0" else None

    with pytest.raises(RuntimeError, match="bug"):
        await debate(FakeBackend(fail=fail), agents=2, rounds=2)


# -- listener ---------------------------------------------------------------------------------


async def test_listener_hooks_fire_per_turn_and_per_round() -> None:
    listener = RecordingListener()
    outcome = await debate(FakeBackend(), agents=3, rounds=3, summarize=True, listener=listener)
    assert len(listener.turns) == 3 * 3 + 3 * 2
    assert sorted(map(id, listener.turns)) == sorted(map(id, outcome.turns))
    assert [r for r, _, _ in listener.rounds] == [1, 2, 3]
    for round_no, turns, vote in listener.rounds:
        assert [t.agent_index for t in turns] == [0, 1, 2]
        assert all(t.round == round_no and t.role != "summarizer" for t in turns)
        assert vote.answer == str(100 * round_no)  # all differ: agent 0 wins the tie
        assert vote.total == 3


async def test_turn_done_precedes_round_done() -> None:
    events: list[str] = []

    class Ordered(DebateListener):
        async def turn_done(self, turn: Turn) -> None:
            events.append(f"turn{turn.round}")

        async def round_done(self, round_no: int, turns: list[Turn], vote: Vote) -> None:
            events.append(f"round{round_no}")

    await debate(FakeBackend(), agents=2, rounds=2, listener=Ordered())
    assert events == ["turn1", "turn1", "round1", "turn2", "turn2", "round2"]


async def test_default_listener_is_a_no_op() -> None:
    outcome = await debate(FakeBackend(), agents=2, rounds=2, listener=None)
    assert len(outcome.turns) == 4
