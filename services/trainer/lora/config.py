"""The data types of LoRA training: hyperparameters, chat examples, results.

Plain dataclasses without torch, so callers can build configs without importing the ML stack.
`services.trainer.lora.loop` re-exports all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from maft.hardware import DTYPES

DEVICES = ("auto", "cpu", "cuda")

ProgressFn = Callable[[int, int, float], None]
"""Called after every optimizer step with (step, total_steps, loss); step counts from 1."""


@dataclass(frozen=True)
class LoraConfigSpec:
    """A fresh adapter's shape. Ignored when training continues from a parent adapter."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one `train_lora` call.

    `dtype` is the dtype of the frozen base weights; adapter weights and optimizer state are
    always fp32. "auto" picks bfloat16 where the hardware multiplies bf16 natively (CUDA with
    bf16, CPUs with AVX512-BF16/AMX) and float32 elsewhere: on an AVX2-only CPU, bf16 matmuls
    are emulated and a training step is about 10-100x slower than in fp32.
    `max_steps` (optimizer steps) overrides `epochs`; data repeats as needed. `min_steps`
    repeats whole epochs over a small dataset until that many steps are done, but never more
    than `max_epochs` passes (15 examples at batch 4 are 4 steps an epoch: a run that short
    does not move the adapter).
    `threads` is the torch intra-op thread count (None: the CPUs this process may use).
    """

    lora: LoraConfigSpec = LoraConfigSpec()
    learning_rate: float = 2e-4
    epochs: int = 1
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_len: int = 1024
    seed: int = 0
    dtype: str = "auto"
    max_steps: int | None = None
    min_steps: int = 0
    max_epochs: int = 8
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {DTYPES}")
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r} is not one of {DEVICES}")
        if min(self.epochs, self.batch_size, self.grad_accum, self.max_seq_len) < 1:
            raise ValueError("epochs, batch_size, grad_accum and max_seq_len must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 (or None)")
        if self.min_steps < 0 or self.max_epochs < self.epochs:
            raise ValueError("min_steps must be >= 0 and max_epochs >= epochs")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")


@dataclass(frozen=True)
class ChatExample:
    """One conversation to learn from; only assistant turns carry loss.

    `train_on="final"`: only the last assistant turn carries loss (earlier ones are context).
    """

    messages: Sequence[Mapping[str, str]]
    train_on: Literal["all_assistant", "final"] = "all_assistant"


@dataclass
class TrainResult:
    """What one `train_lora` call did.

    `train_tokens` counts real (non-padding) tokens through the model, repeats included;
    `loss_tokens` the tokens that carried loss; `seconds` the optimisation loop only (not model
    loading or saving) and `cpu_seconds` its process CPU time (all threads; steadier than wall
    time on a shared machine). `dropped_too_long`: examples over max_seq_len, not trained on.
    """

    steps: int
    examples: int
    train_tokens: int
    loss_tokens: int
    seconds: float
    first_loss: float | None
    final_loss: float | None
    dropped_too_long: int = 0
    cpu_seconds: float = 0.0
    epoch_losses: list[float] = field(default_factory=list)  # token-weighted mean per epoch

    @property
    def tokens_per_s(self) -> float:
        """Training throughput in real tokens per second of the loop."""
        return self.train_tokens / self.seconds if self.seconds > 0 else 0.0
