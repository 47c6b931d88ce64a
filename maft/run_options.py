"""Options of a training run: validated by the gateway, stored with the run, read by the trainer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from maft.debate import MAX_AGENTS
from maft.enums import AGENT_ROLES


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(_Options):
    """LoRA and optimiser settings; unset ones take the trainer's defaults."""

    rank: int | None = Field(default=None, ge=1, le=64)
    alpha: int | None = Field(default=None, ge=1, le=512)
    learning_rate: float | None = Field(default=None, gt=0, le=1e-2)
    epochs: int | None = Field(default=None, ge=1, le=20)
    batch_size: int | None = Field(default=None, ge=1, le=128)
    max_seq_len: int | None = Field(default=None, ge=64, le=32768)
    max_steps: int | None = Field(default=None, ge=1)
    min_steps: int | None = Field(default=None, ge=0, le=10_000, description="Repeat epochs "
                                  "of a small dataset until this many optimizer steps.")
    target_modules: list[str] | None = Field(default=None, min_length=1)


class EvalOptions(_Options):
    """The evaluation gate: a task-generated held-out set, or 'holdout' (labelled debates)."""

    task: str | None = None
    task_options: dict[str, Any] | None = None
    size: int | None = Field(default=None, ge=1, le=5000)
    margin: float | None = Field(default=None, ge=0.0, le=1.0)


class RunOptions(_Options):
    """Which debates to learn from, which agents to train, and how."""

    task: str | None = Field(default=None, description="Only debates of this task.")
    since: datetime | None = None
    until: datetime | None = None
    min_consensus: float = Field(default=0.0, ge=0.0, le=1.0)
    society_versions: list[int] | None = Field(
        default=None, description="Debates served by these societies; default: the active one.")
    agents: int | None = Field(default=None, ge=1, le=MAX_AGENTS,
                               description="Size N of the new society (2N adapters).")
    train_agents: list[str] | None = Field(
        default=None, description="e.g. ['generator-0', 'critic-1']; others keep their weights.")
    w: float | None = Field(default=None, ge=0.0, le=1.0, description="Share of D_C- for critics.")
    majority: Literal["strict", "plurality"] | None = Field(
        default=None, description="When a vote labels: 'strict' (more than half of the agents "
        "agree; the trainer's default) or 'plurality' (the answering tie rule).")
    use_ground_truth: bool = True
    labels_from: Literal["trusted", "any"] | None = Field(
        default=None, description="Whose feedback and reference answers are ground truth: "
        "'trusted' (keys with the label or admin scope; the trainer's default) or 'any' key.")
    critic_loss: Literal["all_assistant", "final"] = "all_assistant"
    from_base: bool = Field(default=False, description="Start from the base model, not the "
                                                       "agents' current adapters.")
    seed: int = 0
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    eval: EvalOptions = Field(default_factory=EvalOptions)

    @field_validator("train_agents")
    @classmethod
    def _agent_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            role, _, index = name.partition("-")
            if role not in AGENT_ROLES or not index.isdigit():
                raise ValueError(f"{name!r}: use 'generator-<n>' or 'critic-<n>'")
        return value
