"""Trainer settings (environment prefix MAFT_), read once per worker process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from maft.adapter_store import normalized_model_path
from maft.settings import CommonSettings
from services.trainer.lora.config import DTYPES, LoraConfigSpec, TrainConfig

# One source of truth for hyperparameter defaults: the trainer's own config dataclasses.
_LORA, _TRAIN = LoraConfigSpec(), TrainConfig()


class TrainerSettings(CommonSettings):
    """Where data, models and adapters live; training, evaluation and retraining defaults."""

    broker_url: str = Field(default="redis://127.0.0.1:6379/0",
                            description="Celery broker; `filesystem://` for the embedded default.")
    inference_model_path: str | None = Field(
        default=None, description="The --model path vLLM serves (written into adapters).")
    work_dir: Path | None = Field(default=None, description="Run datasets; default home/runs.")
    default_agents: int = 3
    lora_rank: int = _LORA.rank
    lora_alpha: int = _LORA.alpha
    learning_rate: float = _TRAIN.learning_rate
    epochs: int = _TRAIN.epochs
    batch_size: int = _TRAIN.batch_size
    max_seq_len: int = _TRAIN.max_seq_len
    train_dtype: str = Field(
        default=_TRAIN.dtype, pattern="^(" + "|".join(DTYPES) + ")$",
        description="Base-weight dtype; `auto` = bf16 where the hardware has it, else fp32.")
    min_steps: int = Field(default=_TRAIN.min_steps, ge=0, description="Optimizer steps each "
                           "adapter gets at least (epochs repeat, at most max_epochs).")
    max_epochs: int = Field(default=_TRAIN.max_epochs, ge=1)
    label_majority: Literal["strict", "plurality"] = "strict"
    labels_from: Literal["trusted", "any"] = Field(
        default="trusted", description="Ground truth only from keys with the label or admin "
        "scope (`trusted`), or from any key (`any`: one query key could poison training).")
    w: float = 2 / 3
    min_examples: int = Field(default=4, description="Fewer examples in all -> run skipped.")
    eval_task: str = "arithmetic"
    eval_task_options: dict[str, Any] = Field(
        default_factory=lambda: {"terms": 2, "pattern": "+", "low": 0, "high": 10})
    eval_size: int = 20
    eval_seed: int = 1234
    eval_rounds: int = 2
    eval_max_tokens: int = 256
    eval_temperature: float = 0.0
    eval_concurrency: int = Field(
        default=2, ge=1, description="Evaluation debates in flight (each has `agents` calls in "
        "flight): 8 x 3 calls missed the 600 s per-call limit on a busy 2-core CPU.")
    promote_margin: float = Field(default=0.0, description="Allowed accuracy drop (0.05 = 5 pts).")
    auto_retrain: bool = True
    auto_retrain_threshold: int = Field(default=50, description="New debates that start a run.")
    auto_retrain_interval_s: float = 300.0
    run_lease_s: float = Field(default=900.0, description="No heartbeat this long: worker lost.")
    inference_timeout_s: float = 600.0

    @property
    def served_model_path(self) -> str:
        """The path string vLLM was started with; adapters must name it as their base."""
        return self.inference_model_path or normalized_model_path(self.model_dir)

    def trusted_labels(self, labels_from: str | None) -> bool:
        """Whether only trusted labellers' ground truth counts (a run's option over ours)."""
        return (labels_from or self.labels_from) == "trusted"

    @property
    def runs_dir(self) -> Path:
        """Where each run keeps its curated datasets."""
        return self.work_dir or self.home / "runs"


@lru_cache
def get_settings() -> TrainerSettings:
    """The process-wide settings."""
    return TrainerSettings()
