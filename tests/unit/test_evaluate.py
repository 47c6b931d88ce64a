"""The evaluation gate's debates: interleaved, bounded, and partial scores kept on failure."""

from __future__ import annotations

import asyncio

import pytest

from maft.debate import Roster
from maft.exceptions import DebateFailedError, InferenceTimeoutError, InferenceUnavailableError
from maft.inference_client import Completion, Sampling
from maft.tasks import get_task
from services.trainer.pipeline.evaluate import (
    Answers,
    EvalSet,
    compare,
    debate_config,
    failure_hint,
)
from services.trainer.settings import TrainerSettings

TASK = get_task("arithmetic", terms=2, pattern="+", low=0, high=10)


class Backend:
    """Answers every call correctly after a short wait; fails from call `fail_at` on."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls, self.in_flight, self.peak, self.fail_at = 0, 0, 0, fail_at
        self.answers = {p.question: p.answer for p in PROBLEMS}

    async def chat(self, *, model: str, messages: list, sampling: Sampling) -> Completion:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise InferenceTimeoutError("timed out")
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        return Completion(f"\\boxed{{{self.answers[messages[-1]['content']]}}}", 5, 5, "stop", 1)


PROBLEMS = TASK.problems(6, seed=1, split="test")
SETTINGS = TrainerSettings(eval_concurrency=2, eval_rounds=1, inference_timeout_s=600)


def rosters() -> dict[str, Roster]:
    return {"active": Roster.base("base", 3), "candidate": Roster.base("base", 3, version=1)}


@pytest.fixture(autouse=True)
def _questions_are_the_last_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TASK, "generation_messages",
                        lambda q: [{"role": "user", "content": q}])


async def test_every_question_is_debated_by_both_societies_with_bounded_calls() -> None:
    backend, answers = Backend(), Answers()
    await compare(EvalSet("t", TASK, PROBLEMS), rosters(), debate_config(SETTINGS, 3), backend,
                  2, answers)
    assert answers.done() == {"active": 6, "candidate": 6}
    assert backend.peak <= 2 * 3  # two debates of three agents


async def test_a_failure_keeps_the_finished_debates_of_both_societies() -> None:
    answers = Answers()
    with pytest.raises(DebateFailedError):
        await compare(EvalSet("t", TASK, PROBLEMS), rosters(), debate_config(SETTINGS, 3),
                      Backend(fail_at=13), 1, answers)
    # One debate at a time, interleaved: questions 0-1 of both societies finished first.
    assert answers.done() == {"active": 2, "candidate": 2}
    assert answers.by_society["active"][0] == PROBLEMS[0].answer


def test_the_hint_names_the_settings_to_change() -> None:
    timeout = DebateFailedError(InferenceTimeoutError("slow"), [])
    hint = failure_hint(timeout, SETTINGS, 3)
    assert "MAFT_EVAL_CONCURRENCY (now 2)" in hint and "6 calls" in hint
    assert "MAFT_INFERENCE_TIMEOUT_S" in hint
    down = DebateFailedError(InferenceUnavailableError("refused"), [])
    assert "MAFT_INFERENCE_URL" in failure_hint(down, SETTINGS, 3)
