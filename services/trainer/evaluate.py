"""Step 3 of a run: the evaluation gate. Candidate vs active society, by debate, on held-out data.

The held-out set is either task-generated questions from the test split (training only ever sees
debates, and held-out questions never reach it) or feedback-labelled debates whose question falls
in the test split (curation drops those when this mode is chosen).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from maft import queue
from maft.db import crud
from maft.debate import DebateConfig, DebateOutcome, Roster, run_debate
from maft.exceptions import DebateFailedError
from maft.inference_client import ChatBackend, InferenceClient, Sampling
from maft.tasks import Problem, Task, get_task, split_of
from maft.training_options import RunOptions
from services.trainer.context import Next, TrainerContext
from services.trainer.runs import Progress, begin_step, end_step


@dataclass
class EvalSet:
    """Questions with known answers that training never saw."""

    source: str
    task: Task
    problems: list[Problem]


def _holdout(db: Session, options: RunOptions, size: int) -> EvalSet:
    task = get_task(options.task or "numeric")
    problems = []
    for r in crud.debate_records(db, task=task.name, since=options.since, until=options.until):
        label = r.feedback_answer or r.reference_answer
        if label and split_of(r.question) == "test":
            problems.append(Problem(r.question, label))
    return EvalSet("holdout", task, problems[-size:])


def eval_set(db: Session, *, ctx: TrainerContext, options: RunOptions) -> EvalSet:
    """The run's held-out set."""
    s, e = ctx.settings, options.eval
    name, size = e.task or s.eval_task, e.size or s.eval_size
    if name == "holdout":
        return _holdout(db, options, size)
    default_opts = s.eval_task_options if name == s.eval_task else {}
    task = get_task(name, **(e.task_options if e.task_options is not None else default_opts))
    return EvalSet(f"task:{name}", task, task.problems(size, seed=s.eval_seed, split="test"))


def _rosters(db: Session, *, run_id: uuid.UUID) -> tuple[Roster, Roster]:
    run = crud.get_run(db, run_id=run_id)
    assert run.candidate_society_version is not None
    active = crud.roster_of(crud.active_society(db))
    return active, crud.roster_of(crud.get_society(db, version=run.candidate_society_version))


async def score(roster: Roster, data: EvalSet, config: DebateConfig, client: ChatBackend,
                concurrency: int, progress: Any = None,
                on_outcome: Callable[[int, DebateOutcome], None] | None = None
                ) -> dict[str, Any]:
    """Accuracy (with standard error) of a society's debates on the held-out set.

    `on_outcome(i, outcome)` sees each finished debate of `data.problems[i]` (e.g. to save it).
    """
    gate, done = asyncio.Semaphore(concurrency), 0

    async def one(index: int, problem: Problem) -> str | None:
        nonlocal done
        async with gate:
            outcome = await run_debate(problem.question, task=data.task, config=config,
                                       roster=roster, backend=client)
        done += 1
        if on_outcome:
            on_outcome(index, outcome)
        if progress:
            progress(done, len(data.problems))
        return outcome.final_answer

    answers = await asyncio.gather(*(one(i, p) for i, p in enumerate(data.problems)))
    right = sum(data.task.is_correct(a, p.answer) for a, p in zip(answers, data.problems,
                                                                  strict=True))
    n = len(data.problems)
    accuracy = right / n if n else 0.0
    return {"society_version": roster.society_version, "accuracy": accuracy, "correct": right,
            "n": n, "stderr": math.sqrt(accuracy * (1 - accuracy) / n) if n else None,
            "answers": answers}


async def _compare(ctx: TrainerContext, data: EvalSet, active: Roster, candidate: Roster,
                   progress: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    s = ctx.settings
    agents = min(len(active.generators), len(candidate.generators))
    config = DebateConfig(agents=agents, rounds=s.eval_rounds, sampling=Sampling(
        temperature=s.eval_temperature, top_p=1.0, max_tokens=s.eval_max_tokens))
    client = InferenceClient(s.inference_url, timeout=s.inference_timeout_s,
                             api_key=s.inference_key)
    total = 2 * len(data.problems)
    try:
        before = await score(active, data, config, client, s.eval_concurrency,
                             lambda d, _n: progress(d, total))
        after = await score(candidate, data, config, client, s.eval_concurrency,
                            lambda d, n: progress(n + d, total))
    finally:
        await client.aclose()
    return before, after


def _decide(db: Session, *, run_id: uuid.UUID, result: dict[str, Any]) -> None:
    run = crud.get_run(db, run_id=run_id)
    run.evaluation, run.decision = result, result["decision"]
    end_step(db, run, "evaluate", detail={"decision": result["decision"]})


def evaluate_run(ctx: TrainerContext, run_id: uuid.UUID) -> list[Next]:
    """Score both societies; promote only if the candidate is not worse by more than the margin."""
    nxt: list[Next] = [(queue.TASK_PUBLISH, (str(run_id),))]
    if not begin_step(ctx, run_id, "evaluate"):
        return nxt
    options = RunOptions.model_validate(ctx.call(lambda db: crud.get_run(db, run_id=run_id)
                                                 .options))
    data = ctx.call(eval_set, ctx=ctx, options=options)
    active, candidate = ctx.call(_rosters, run_id=run_id)
    margin = options.eval.margin if options.eval.margin is not None else (
        ctx.settings.promote_margin)
    result: dict[str, Any] = {"source": data.source, "questions": len(data.problems),
                              "margin": margin}
    if not data.problems:
        result["decision"] = "reject"
        result["reason"] = "no held-out data to evaluate on"
    else:
        try:
            before, after = asyncio.run(_compare(ctx, data, active, candidate,
                                                 Progress(ctx, run_id, "evaluate")))
        except DebateFailedError as exc:  # e.g. a candidate adapter vLLM cannot load
            raise RuntimeError(f"evaluation failed: {exc}") from exc
        promote = after["accuracy"] >= before["accuracy"] - margin
        result.update(active=before, candidate=after,
                      decision="promote" if promote else "reject")
    ctx.call(_decide, run_id=run_id, result=result)
    return nxt
