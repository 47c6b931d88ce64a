"""Step 2 of a run: train one agent's LoRA (continuing from its current adapter) and publish it.

Idempotent: the adapter is written to a temporary folder and moved into the store under a new,
never-reused lora_name; a retry finds it there (or finds the step done) and does not train twice.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from maft.adapter_store import lora_name_for, read_adapter_config
from maft.db import crud
from maft.enums import Role, SocietyKind
from maft.run_options import RunOptions
from services.trainer.context import Next, TrainerContext
from services.trainer.exceptions import RunNotPlannedError
from services.trainer.lora.config import ChatExample, LoraConfigSpec, TrainConfig
from services.trainer.lora.loop import train_lora
from services.trainer.pipeline.datasets import dataset_path, read_dataset
from services.trainer.pipeline.runs import Progress, begin_step, fan_in, heartbeat


def train_config(ctx: TrainerContext, options: RunOptions) -> TrainConfig:
    """Hyperparameters: the run's options over the trainer's defaults."""
    s, h = ctx.settings, options.hyperparameters
    lora = LoraConfigSpec(rank=h.rank or s.lora_rank, alpha=h.alpha or s.lora_alpha)
    if h.target_modules:
        lora = replace(lora, target_modules=tuple(h.target_modules))
    return TrainConfig(lora=lora, learning_rate=h.learning_rate or s.learning_rate,
                       epochs=h.epochs or s.epochs, batch_size=h.batch_size or s.batch_size,
                       max_seq_len=h.max_seq_len or s.max_seq_len, seed=options.seed,
                       dtype=s.train_dtype, max_steps=h.max_steps,
                       min_steps=s.min_steps if h.min_steps is None else h.min_steps,
                       max_epochs=max(s.max_epochs, h.epochs or s.epochs))


def _context(db: Session, *, run_id: uuid.UUID, role: str, agent_index: int
             ) -> tuple[RunOptions, int, str | None]:
    run = crud.get_run(db, run_id=run_id)
    base = crud.get_society(db, version=run.base_society_version or 0)
    parent = None
    if base.kind == SocietyKind.ADAPTERS and agent_index < base.agents:
        roster = crud.roster_of(base)
        parent = (roster.generators if role == Role.GENERATOR else roster.critics)[agent_index]
    if run.candidate_society_version is None:
        raise RunNotPlannedError(f"training run {run_id} has no candidate society: its curate "
                                 "step did not finish")
    return RunOptions.model_validate(run.options), run.candidate_society_version, parent


def selected(options: RunOptions, role: str, agent_index: int) -> bool:
    """Whether the run trains this agent (others keep their current weights)."""
    return options.train_agents is None or f"{role}-{agent_index}" in options.train_agents


def save_fresh_lora(base_model_path: Path, out_dir: Path, lora: LoraConfigSpec) -> None:
    """An untrained LoRA (B = 0: exactly the base model) for an agent with nothing to learn."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model_path)
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(str(out_dir))


def build_adapter(ctx: TrainerContext, *, examples: list[dict[str, Any]], out: Path,
                  config: TrainConfig, parent: Path | None, progress: Progress
                  ) -> dict[str, Any]:
    """Train into `out`, or carry the parent (or a fresh LoRA) over when there is no data."""
    if not examples:
        if parent is not None:
            shutil.copytree(parent, out)
            return {"trained": False, "reason": "no examples: parent weights carried over"}
        save_fresh_lora(ctx.settings.model_dir, out, config.lora)
        return {"trained": False, "reason": "no examples: untrained adapter (= base model)"}
    chats = [ChatExample(e["messages"], e["train_on"]) for e in examples]
    result = train_lora(base_model_path=ctx.settings.model_dir, examples=chats, out_dir=out,
                        config=config, parent_adapter=parent, progress=progress)
    return {"trained": True, "examples": len(chats), **asdict(result),
            "tokens_per_s": result.tokens_per_s}


def train_agent(ctx: TrainerContext, run_id: uuid.UUID, role: str, agent_index: int
                ) -> list[Next]:
    """Train, publish and record one agent's new adapter, then fan in."""
    name = crud.train_step_name(role, agent_index)
    if begin_step(ctx, run_id, name):
        with heartbeat(ctx, run_id, name):
            _train_and_record(ctx, run_id, role, agent_index, name)
    return fan_in(ctx, run_id)


def _train_and_record(ctx: TrainerContext, run_id: uuid.UUID, role: str, agent_index: int,
                      name: str) -> None:
    options, version, parent = ctx.call(_context, run_id=run_id, role=role,
                                        agent_index=agent_index)
    lora_name = lora_name_for(role, agent_index, version)
    config = train_config(ctx, options)
    metrics: dict[str, Any] = {"trained": False, "reason": "already published (retry)"}
    if not ctx.store.exists(lora_name):
        parent_path = ctx.store.path(parent) if parent and not options.from_base else None
        examples = read_dataset(dataset_path(ctx.settings.runs_dir, run_id, role, agent_index))
        if not selected(options, role, agent_index):
            examples = []
        work = ctx.settings.runs_dir / str(run_id) / f".tmp-{lora_name}-{uuid.uuid4().hex}"
        try:
            metrics = build_adapter(ctx, examples=examples, out=work, config=config,
                                    parent=parent_path, progress=Progress(ctx, run_id, name))
            ctx.store.publish_if_absent(work, lora_name, base_model_path=ctx.settings.
                                        served_model_path, max_rank=ctx.settings.max_lora_rank)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    folder = ctx.store.path(lora_name)
    rank = int(read_adapter_config(folder).get("r", config.lora.rank))
    ctx.call(_record, run_id=run_id, step_name=name, metrics=metrics, adapter=dict(
        lora_name=lora_name, society_version=version, role=role, agent_index=agent_index,
        lora_path=str(folder), parent_lora_name=parent, rank=rank, metrics=metrics))


def _record(db: Session, *, run_id: uuid.UUID, step_name: str, metrics: dict[str, Any],
            adapter: dict[str, Any]) -> None:
    crud.add_adapter_version(db, **adapter)
    crud.end_step(db, run=crud.get_run(db, run_id=run_id), name=step_name,
                  detail={"lora_name": adapter["lora_name"], **metrics})
