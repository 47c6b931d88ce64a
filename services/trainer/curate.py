"""Step 1 of a run: build every agent's dataset from stored debates, plan the other steps."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from maft import queue
from maft.adapter_store import AdapterStore, parse_lora_name
from maft.curation import AgentDataset, CurationConfig, DebateRecord, Example, curate
from maft.db import crud
from maft.db.models import Society
from maft.tasks import get_task, split_of, task_names
from maft.training_options import RunOptions
from services.trainer.context import Next, TrainerContext
from services.trainer.runs import begin_step, end_step, heartbeat, live_run, train_step_name

ROLES = ("generator", "critic")


def dataset_path(ctx: TrainerContext, run_id: uuid.UUID, role: str, agent_index: int) -> Path:
    """Where a run keeps one agent's curated examples."""
    return ctx.settings.runs_dir / str(run_id) / f"{role}-{agent_index}.jsonl"


def write_dataset(path: Path, examples: Sequence[Example]) -> None:
    """JSONL, written atomically so a retried step never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        for ex in examples:
            out.write(json.dumps({"messages": list(ex.messages), "train_on": ex.train_on,
                                  "kind": ex.kind, "debate_id": ex.debate_id,
                                  "label": ex.label, "label_source": ex.label_source}) + "\n")
    tmp.replace(path)


def read_dataset(path: Path) -> list[dict[str, Any]]:
    """The examples written by write_dataset."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curate_all(records: Sequence[DebateRecord], *, agents: int, options: RunOptions,
               w: float) -> tuple[dict[tuple[str, int], AgentDataset], dict[str, Any]]:
    """Curate each task's debates with that task's parser, then merge per agent."""
    config = CurationConfig(w=w, use_ground_truth=options.use_ground_truth,
                            min_consensus=options.min_consensus,
                            critic_loss=options.critic_loss, seed=options.seed)
    by_task: dict[str, list[DebateRecord]] = defaultdict(list)
    for record in records:
        by_task[record.task if record.task in task_names() else "numeric"].append(record)
    merged = {(r, n): AgentDataset(r, n, []) for r in ROLES for n in range(agents)}
    per_task = {}
    for name, group in sorted(by_task.items()):
        result = curate(group, task=get_task(name), agents=agents, config=config)
        per_task[name] = result.stats
        for key, data in result.datasets.items():
            merged[key].examples.extend(data.examples)
    stats = {"debates": len(records), "tasks": per_task,
             "agents": {f"{r}-{n}": d.stats() for (r, n), d in merged.items()}}
    return merged, stats


def _load(db: Session, *, run_id: uuid.UUID, options: RunOptions, holdout: bool
          ) -> tuple[list[DebateRecord], Society]:
    run = crud.get_run(db, run_id=run_id)
    base = crud.get_society(db, version=run.base_society_version or 0)
    records = crud.debate_records(db, task=options.task, since=options.since,
                                  until=options.until,
                                  society_versions=options.society_versions or [base.version])
    if holdout:  # the held-out evaluation questions are never trained on
        records = [r for r in records if split_of(r.question) != "test"]
    return records, base


def agents_of(base: Society, options: RunOptions, default: int) -> int:
    """Size of the new society."""
    return options.agents or (base.agents if base.kind == "adapters" else default)


def store_next_version(store: AdapterStore) -> int:
    """A version above every adapter already in the store: names are never reused, even if the
    database was restored from an older backup."""
    versions = [parse_lora_name(n).version for n in store.names() if _is_lora_name(n)]
    return max(versions, default=0) + 1


def _is_lora_name(name: str) -> bool:
    try:
        parse_lora_name(name)
    except ValueError:
        return False
    return True


def _plan(db: Session, *, run_id: uuid.UUID, agents: int, stats: dict[str, Any],
          base: Society, store: AdapterStore) -> list[Next]:
    run = crud.get_run(db, run_id=run_id)
    run.dataset_stats = stats
    if run.candidate_society_version is None:
        version = max(crud.next_society_version(db), store_next_version(store))
        db.add(Society(version=version, kind="adapters", status="candidate", agents=agents,
                       base_model_name=base.base_model_name, parent_version=base.version,
                       training_run_id=run.id))
        run.candidate_society_version = version
    names = [train_step_name(r, n) for r in ROLES for n in range(agents)]
    crud.add_steps(db, run=run, names=[*names, "evaluate", "publish"])
    end_step(db, run, "curate", detail={"examples": _total(stats)})
    return [(queue.TASK_TRAIN_AGENT, (str(run_id), r, n)) for r in ROLES for n in range(agents)]


def _total(stats: dict[str, Any]) -> int:
    return sum(int(a.get("size", 0)) for a in stats["agents"].values())


def _skip(db: Session, *, run_id: uuid.UUID, stats: dict[str, Any], reason: str) -> None:
    run = crud.get_run(db, run_id=run_id)
    run.dataset_stats = stats
    end_step(db, run, "curate", status="skipped", detail={"reason": reason})
    crud.finish_run(db, run=run, status="skipped", decision="skipped", error=reason)


def start_run(ctx: TrainerContext, run_id: uuid.UUID) -> list[Next]:
    """Curate, then plan one training task per agent (or end the run as skipped)."""
    with ctx.tx() as db:
        run = live_run(db, run_id)
        if run is None:
            return []
        crud.add_steps(db, run=run, names=["curate"])
        options = RunOptions.model_validate(run.options)
    if not begin_step(ctx, run_id, "curate"):
        return pending_trains(ctx, run_id)
    with heartbeat(ctx, run_id, "curate"):
        return _curate(ctx, run_id, options)


def _curate(ctx: TrainerContext, run_id: uuid.UUID, options: RunOptions) -> list[Next]:
    holdout = (options.eval.task or ctx.settings.eval_task) == "holdout"
    records, base = ctx.call(_load, run_id=run_id, options=options, holdout=holdout)
    agents = agents_of(base, options, ctx.settings.default_agents)
    datasets, stats = curate_all(records, agents=agents, options=options,
                                 w=ctx.settings.w if options.w is None else options.w)
    if _total(stats) < ctx.settings.min_examples:
        reason = (f"too little data: {_total(stats)} examples from {len(records)} debates "
                  f"(minimum {ctx.settings.min_examples})")
        ctx.call(_skip, run_id=run_id, stats=stats, reason=reason)
        return []
    for (role, n), data in datasets.items():
        write_dataset(dataset_path(ctx, run_id, role, n), data.examples)
    return ctx.call(_plan, run_id=run_id, agents=agents, stats=stats, base=base,
                    store=ctx.store)


def pending_trains(ctx: TrainerContext, run_id: uuid.UUID) -> list[Next]:
    """Training tasks of a curated run that have not finished (a retried curate re-enqueues)."""
    with ctx.tx() as db:
        run = crud.get_run(db, run_id=run_id)
        todo = [s.name.split(":") for s in run.steps
                if s.name.startswith("train:") and s.status not in ("done", "skipped")]
    return [(queue.TASK_TRAIN_AGENT, (str(run_id), role, int(n))) for _, role, n in todo]
