"""Step 3 of a run: the evaluation gate. Candidate vs active society, by debate, on held-out data.

The held-out set is either task-generated questions from the test split (training only ever sees
debates, and held-out questions never reach it) or feedback-labelled debates whose question falls
in the test split (curation drops those when this mode is chosen).

Both societies debate each question, interleaved question by question, with at most
`eval_concurrency` debates in flight (each debate has `agents` calls in flight per round), so the
per-call limit holds on a busy CPU. If inference fails part-way, the scores of the debates that
finished are kept on the run, with what to change.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from maft import queue
from maft.db import crud
from maft.debate import DebateConfig, Roster, run_debate
from maft.enums import Decision, StepStatus
from maft.exceptions import (
    DebateFailedError,
    InferenceTimeoutError,
    InferenceUnavailableError,
)
from maft.inference_client import ChatBackend, InferenceClient, Sampling
from maft.run_options import RunOptions
from maft.scoring import EvalSet, accuracy
from maft.tasks import Problem, get_task, split_of
from services.trainer.context import Next, TrainerContext
from services.trainer.exceptions import EvaluationError
from services.trainer.pipeline.runs import Progress, begin_step, heartbeat
from services.trainer.settings import TrainerSettings


@dataclass
class Answers:
    """Each society's final answers by question index, as far as the evaluation got."""

    by_society: dict[str, dict[int, str | None]] = field(
        default_factory=lambda: {"active": {}, "candidate": {}})

    def done(self) -> dict[str, int]:
        """Finished debates per society."""
        return {k: len(v) for k, v in self.by_society.items()}


def _holdout(db: Session, options: RunOptions, size: int, trusted: bool) -> EvalSet:
    task = get_task(options.task or "numeric")
    problems = []
    for r in crud.debate_records(db, task=task.name, since=options.since, until=options.until,
                                 trusted_labels_only=trusted):
        label = r.feedback_answer or r.reference_answer
        if label and split_of(r.question) == "test":
            problems.append(Problem(r.question, label))
    return EvalSet("holdout", task, problems[-size:])


def eval_set(db: Session, *, ctx: TrainerContext, options: RunOptions) -> EvalSet:
    """The run's held-out set."""
    s, e = ctx.settings, options.eval
    name, size = e.task or s.eval_task, e.size or s.eval_size
    if name == "holdout":
        return _holdout(db, options, size, s.trusted_labels(options.labels_from))
    default_opts = s.eval_task_options if name == s.eval_task else {}
    task = get_task(name, **(e.task_options if e.task_options is not None else default_opts))
    return EvalSet(f"task:{name}", task, task.problems(size, seed=s.eval_seed, split="test"))


def _rosters(db: Session, *, run_id: uuid.UUID) -> tuple[Roster, Roster]:
    run = crud.get_run(db, run_id=run_id)
    if run.candidate_society_version is None:
        raise EvaluationError(f"training run {run_id} has no candidate society to evaluate")
    active = crud.roster_of(crud.active_society(db))
    return active, crud.roster_of(crud.get_society(db, version=run.candidate_society_version))


async def compare(data: EvalSet, rosters: dict[str, Roster], config: DebateConfig,
                  client: ChatBackend, concurrency: int, answers: Answers,
                  progress: Callable[[int, int], None] | None = None) -> None:
    """Debate every question with each society (interleaved), filling `answers`.

    Stops at the first failed debate (DebateFailedError); what finished stays in `answers`.
    """
    gate = asyncio.Semaphore(concurrency)
    jobs = [(name, i) for i in range(len(data.problems)) for name in rosters]

    async def one(name: str, index: int) -> None:
        async with gate:
            outcome = await run_debate(data.problems[index].question, task=data.task,
                                       config=config, roster=rosters[name], backend=client)
        answers.by_society[name][index] = outcome.final_answer
        if progress:
            progress(sum(answers.done().values()), len(jobs))

    tasks = [asyncio.create_task(one(name, index)) for name, index in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # the first failure ends the evaluation: stop the other debates
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def debate_config(settings: TrainerSettings, agents: int) -> DebateConfig:
    """The shape and (greedy) sampling of evaluation debates."""
    return DebateConfig(agents=agents, rounds=settings.eval_rounds, sampling=Sampling(
        temperature=settings.eval_temperature, top_p=1.0, max_tokens=settings.eval_max_tokens))


def failure_hint(exc: DebateFailedError, settings: TrainerSettings, agents: int) -> str:
    """What to change after evaluation debates failed with `exc`."""
    s = settings
    if isinstance(exc.cause, InferenceTimeoutError):
        return (f"each model call may take {s.inference_timeout_s:.0f} s and up to "
                f"{s.eval_concurrency * agents} calls ran at once: lower MAFT_EVAL_CONCURRENCY "
                f"(now {s.eval_concurrency}), MAFT_EVAL_MAX_TOKENS (now {s.eval_max_tokens}) or "
                f"MAFT_EVAL_SIZE (now {s.eval_size}), or raise MAFT_INFERENCE_TIMEOUT_S")
    if isinstance(exc.cause, InferenceUnavailableError):
        return f"start the inference server or fix MAFT_INFERENCE_URL (now {s.inference_url})"
    return "the inference server refused a request of the candidate or active society (above)"


async def _run_compare(ctx: TrainerContext, data: EvalSet, rosters: dict[str, Roster],
                       answers: Answers, progress: Progress) -> None:
    s = ctx.settings
    agents = min(len(r.generators) for r in rosters.values())
    client = InferenceClient(s.inference_url, timeout=s.inference_timeout_s,
                             api_key=s.inference_key)
    try:
        await compare(data, rosters, debate_config(s, agents), client, s.eval_concurrency,
                      answers, progress)
    except DebateFailedError as exc:
        done, n = answers.done(), len(data.problems)
        raise EvaluationError(
            f"evaluation stopped after {done['active']}/{n} active and {done['candidate']}/{n} "
            f"candidate debates: {exc}. {failure_hint(exc, s, agents)}") from exc
    finally:
        await client.aclose()


def _record(db: Session, *, run_id: uuid.UUID, result: dict[str, Any],
            status: StepStatus = StepStatus.DONE) -> None:
    run = crud.record_evaluation(db, run_id=run_id, result=result)
    crud.end_step(db, run=run, name="evaluate", status=status,
                  detail={"decision": result.get("decision"),
                          "partial": result.get("partial", False)})


def _scores(data: EvalSet, rosters: dict[str, Roster], answers: Answers) -> dict[str, Any]:
    return {name: accuracy(data.task, data.problems, answers.by_society[name],
                           roster.society_version) for name, roster in rosters.items()}


def _evaluate(ctx: TrainerContext, run_id: uuid.UUID) -> None:
    options = RunOptions.model_validate(ctx.call(lambda db: crud.get_run(db, run_id=run_id)
                                                 .options))
    data = ctx.call(eval_set, ctx=ctx, options=options)
    active, candidate = ctx.call(_rosters, run_id=run_id)
    margin = options.eval.margin if options.eval.margin is not None else (
        ctx.settings.promote_margin)
    result: dict[str, Any] = {"source": data.source, "questions": len(data.problems),
                              "margin": margin}
    if not data.problems:
        result.update(decision=Decision.REJECT, reason="no held-out data to evaluate on")
        ctx.call(_record, run_id=run_id, result=result)
        return
    rosters, answers = {"active": active, "candidate": candidate}, Answers()
    try:
        asyncio.run(_run_compare(ctx, data, rosters, answers, Progress(ctx, run_id, "evaluate")))
    except EvaluationError as exc:
        result.update(_scores(data, rosters, answers), partial=True, error=str(exc))
        ctx.call(_record, run_id=run_id, result=result, status=StepStatus.FAILED)
        raise
    result.update(_scores(data, rosters, answers))
    promote = result["candidate"]["accuracy"] >= result["active"]["accuracy"] - margin
    result["decision"] = Decision.PROMOTE if promote else Decision.REJECT
    ctx.call(_record, run_id=run_id, result=result)


def evaluate_run(ctx: TrainerContext, run_id: uuid.UUID) -> list[Next]:
    """Score both societies; promote only if the candidate is not worse by more than the margin.

    EvaluationError (the run then fails, keeping the partial scores) if inference fails.
    """
    nxt: list[Next] = [(queue.TASK_PUBLISH, (str(run_id),))]
    if begin_step(ctx, run_id, "evaluate"):
        with heartbeat(ctx, run_id, "evaluate"):
            _evaluate(ctx, run_id)
    return nxt
