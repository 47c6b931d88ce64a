"""Step 1 of a run: build every agent's dataset from stored debates, plan the other steps."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from maft import queue
from maft.curation import TRUNCATED, AgentDataset, CurationConfig, curate
from maft.db import crud
from maft.db.models import Society
from maft.enums import AGENT_ROLES, SocietyKind
from maft.records import DebateRecord
from maft.run_options import RunOptions
from maft.tasks import get_task, split_of, task_names
from services.trainer.context import Next, TrainerContext
from services.trainer.pipeline.datasets import dataset_path, write_dataset
from services.trainer.pipeline.runs import begin_step, heartbeat
from services.trainer.settings import TrainerSettings

Datasets = dict[tuple[str, int], AgentDataset]


def curate_all(records: Sequence[DebateRecord], *, agents: int,
               config: CurationConfig) -> tuple[Datasets, dict[str, Any], list[dict[str, Any]]]:
    """Curate each task's debates with that task's parser, then merge per agent; also what
    became of each debate and response (`Curation.outcome_rows`)."""
    by_task: dict[str, list[DebateRecord]] = defaultdict(list)
    for record in records:
        by_task[record.task if record.task in task_names() else "numeric"].append(record)
    merged: Datasets = {
        (r, n): AgentDataset(r, n, []) for r in AGENT_ROLES for n in range(agents)}
    per_task, rows = {}, []
    for name, group in sorted(by_task.items()):
        result = curate(group, task=get_task(name), agents=agents, config=config)
        per_task[name] = result.stats
        rows.extend(result.outcome_rows())
        for key, data in result.datasets.items():
            merged[key].examples.extend(data.examples)
            merged[key].outcomes.update(data.outcomes)
            merged[key].info[TRUNCATED] = merged[key].info.get(TRUNCATED, 0) + data.info.get(
                TRUNCATED, 0)
    stats = {"debates": len(records), "tasks": per_task,
             "agents": {f"{r}-{n}": d.stats() for (r, n), d in merged.items()}}
    return merged, stats, rows


def curation_config(settings: TrainerSettings, options: RunOptions) -> CurationConfig:
    """The run's curation rules: its options over the trainer's defaults."""
    return CurationConfig(w=settings.w if options.w is None else options.w,
                          use_ground_truth=options.use_ground_truth,
                          min_consensus=options.min_consensus, critic_loss=options.critic_loss,
                          majority=options.majority or settings.label_majority,
                          seed=options.seed)


def _load(db: Session, *, run_id: uuid.UUID, options: RunOptions, holdout: bool,
          trusted_only: bool) -> tuple[list[DebateRecord], Society]:
    run = crud.get_run(db, run_id=run_id)
    base = crud.get_society(db, version=run.base_society_version or 0)
    records = crud.debate_records(db, task=options.task, since=options.since,
                                  until=options.until,
                                  society_versions=options.society_versions or [base.version],
                                  trusted_labels_only=trusted_only)
    if holdout:  # the held-out evaluation questions are never trained on
        records = [r for r in records if split_of(r.question) != "test"]
    return records, base


def agents_of(base: Society, options: RunOptions, default: int) -> int:
    """Size of the new society."""
    return options.agents or (base.agents if base.kind == SocietyKind.ADAPTERS else default)


def _total(stats: dict[str, Any]) -> int:
    return sum(int(a.get("size", 0)) for a in stats["agents"].values())


def _train_tasks(run_id: uuid.UUID, agents: list[tuple[str, int]]) -> list[Next]:
    return [(queue.TASK_TRAIN_AGENT, (str(run_id), role, n)) for role, n in agents]


def start_run(ctx: TrainerContext, run_id: uuid.UUID) -> list[Next]:
    """Curate, then plan one training task per agent (or end the run as skipped)."""
    with ctx.tx() as db:
        run = crud.live_run(db, run_id=run_id)
        if run is None:
            return []
        crud.add_steps(db, run=run, names=["curate"])
        options = RunOptions.model_validate(run.options)
    if not begin_step(ctx, run_id, "curate"):  # a retry after curation: re-enqueue the rest
        return _train_tasks(run_id, ctx.call(crud.unfinished_trains, run_id=run_id))
    with heartbeat(ctx, run_id, "curate"):
        return _curate(ctx, run_id, options)


def _curate(ctx: TrainerContext, run_id: uuid.UUID, options: RunOptions) -> list[Next]:
    holdout = (options.eval.task or ctx.settings.eval_task) == "holdout"
    records, base = ctx.call(_load, run_id=run_id, options=options, holdout=holdout,
                             trusted_only=ctx.settings.trusted_labels(options.labels_from))
    agents = agents_of(base, options, ctx.settings.default_agents)
    datasets, stats, outcomes = curate_all(records, agents=agents,
                                           config=curation_config(ctx.settings, options))
    ctx.call(crud.record_outcomes, run_id=run_id, rows=outcomes)
    if _total(stats) < ctx.settings.min_examples:
        reason = (f"too little data: {_total(stats)} examples from {len(records)} debates "
                  f"(minimum {ctx.settings.min_examples})")
        ctx.call(crud.skip_run, run_id=run_id, stats=stats, reason=reason)
        return []
    for (role, n), data in datasets.items():
        write_dataset(dataset_path(ctx.settings.runs_dir, run_id, role, n), data.examples)
    slots = [(str(role), n) for role in AGENT_ROLES for n in range(agents)]
    # Versions never reuse a name, even one the store holds from a database restored older.
    version = max(ctx.call(crud.next_society_version), ctx.store.next_version())
    ctx.call(crud.plan_run, run_id=run_id, version=version, agents=agents, stats=stats,
             steps=[*(crud.train_step_name(r, n) for r, n in slots), "evaluate", "publish"],
             detail={"examples": _total(stats)})
    return _train_tasks(run_id, slots)
