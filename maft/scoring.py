"""A society's accuracy by debate on a set of questions with known answers (the evaluation
gate and the experiment harness both score this way)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maft.debate import DebateConfig, DebateOutcome, Roster, run_debate
from maft.inference_client import ChatBackend
from maft.tasks import Problem, Task


@dataclass
class EvalSet:
    """Questions with known answers that training never saw."""

    source: str
    task: Task
    problems: list[Problem]


def accuracy(task: Task, problems: list[Problem], answers: dict[int, str | None],
             version: int) -> dict[str, Any]:
    """Accuracy (with standard error) over the questions that have an answer."""
    right = sum(task.is_correct(a, problems[i].answer) for i, a in answers.items())
    n = len(answers)
    share = right / n if n else 0.0
    return {"society_version": version, "accuracy": share, "correct": right, "n": n,
            "stderr": math.sqrt(share * (1 - share) / n) if n else None,
            "answers": [answers.get(i) for i in range(len(problems))]}


async def score(roster: Roster, data: EvalSet, config: DebateConfig, client: ChatBackend,
                concurrency: int, progress: Callable[[int, int], None] | None = None,
                on_outcome: Callable[[int, DebateOutcome], None] | None = None
                ) -> dict[str, Any]:
    """Accuracy (with standard error) of a society's debates on the held-out set.

    At most `concurrency` debates run at once; `on_outcome(i, outcome)` sees each finished
    debate of `data.problems[i]` (e.g. to save it).
    """
    gate, answers = asyncio.Semaphore(concurrency), dict[int, str | None]()

    async def one(index: int, problem: Problem) -> None:
        async with gate:
            outcome = await run_debate(problem.question, task=data.task, config=config,
                                       roster=roster, backend=client)
        answers[index] = outcome.final_answer
        if on_outcome:
            on_outcome(index, outcome)
        if progress:
            progress(len(answers), len(data.problems))

    await asyncio.gather(*(one(i, p) for i, p in enumerate(data.problems)))
    return accuracy(data.task, data.problems, answers, roster.society_version)
