"""LoRA finetuning of one agent: chat examples in, a PEFT adapter folder out.

The adapter (adapter_config.json + adapter_model.safetensors, no modules_to_save) is what vLLM
serves; the caller publishes it with AdapterStore.publish. The loop is our own rather than
transformers' Trainer, mainly so that the vocabulary projection runs only on the positions that
carry loss: on a 135M model with a 49k vocabulary it is a fifth of the compute, and assistant
tokens are typically half of a chat. Batches are grouped by length to cut padding.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from services.trainer.lora.batching import Batch, Encoded, collate, step_plan, steps_per_epoch
from services.trainer.lora.chat_encoding import IGNORE_INDEX, ExampleTooLongError, encode_example
from services.trainer.lora.config import (
    ChatExample,
    LoraConfigSpec,
    ProgressFn,
    TrainConfig,
    TrainResult,
)
from services.trainer.lora.runtime import configure_threads, resolve_device, resolve_dtype

__all__ = ["ChatExample", "LoraConfigSpec", "ProgressFn", "TrainConfig", "TrainResult",
           "encode_example", "train_lora"]

log = logging.getLogger(__name__)


def encode_all(tokenizer: Any, examples: Sequence[ChatExample],
               max_seq_len: int) -> tuple[list[Encoded], int]:
    """Encoded examples and how many were dropped for exceeding `max_seq_len`."""
    encoded, dropped = [], 0
    for example in examples:
        try:
            ids, labels = encode_example(tokenizer, example, max_seq_len)
        except ExampleTooLongError:
            dropped += 1
            continue
        encoded.append(Encoded(ids, labels))
    if not encoded:
        raise ValueError(f"no example to train on ({dropped} longer than {max_seq_len} tokens)")
    return encoded, dropped


def lora_config(spec: LoraConfigSpec) -> LoraConfig:
    """PEFT's config for a fresh adapter of shape `spec` (default init: B = 0)."""
    return LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=list(spec.target_modules), bias="none",
                      task_type="CAUSAL_LM")


def load_model(base_model_path: Path, spec: LoraConfigSpec, parent_adapter: Path | None, *,
               dtype: torch.dtype, seed: int) -> PeftModel:
    """The base model with a trainable adapter: the parent's (its shape wins) or a fresh one."""
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=dtype)
    model.config.use_cache = False  # no KV cache in training; it only costs memory
    if parent_adapter is not None:
        peft_model = PeftModel.from_pretrained(model, str(parent_adapter), is_trainable=True)
    else:
        torch.manual_seed(seed)  # lora_A's random init
        peft_model = get_peft_model(model, lora_config(spec))
    if getattr(peft_model.peft_config["default"], "modules_to_save", None):
        raise ValueError("adapter has modules_to_save, which vLLM cannot serve")
    return peft_model


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The adapter's parameters, kept in fp32 whatever the base dtype (Adam needs the range)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    for param in params:
        if param.dtype != torch.float32:
            param.data = param.data.float()
    return params


def _full_logits_needed(config: Any) -> bool:
    """Models that transform logits after the projection (softcapping, scaling)."""
    return bool(getattr(config, "final_logit_softcapping", None)) or (
        getattr(config, "logit_scale", None) not in (None, 1, 1.0))


def batch_loss_sum(model: PeftModel, batch: Batch) -> torch.Tensor:
    """Summed cross-entropy of the batch's labelled tokens, each predicted from its prefix."""
    base: Any = model.get_base_model()  # a *ForCausalLM; typed loosely by PEFT
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE_INDEX
    if _full_logits_needed(base.config):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        selected = logits[:, :-1][keep]
    else:
        # Project only the positions that carry loss onto the vocabulary.
        hidden = base.get_decoder()(input_ids=batch.input_ids,
                                    attention_mask=batch.attention_mask).last_hidden_state
        selected = base.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(selected.float(), targets[keep], reduction="sum")


def optimizer_step(model: PeftModel, batches: list[Batch], params: list[torch.nn.Parameter],
                   optimizer: torch.optim.Optimizer, max_grad_norm: float | None) -> float:
    """One update from `batches` (gradient accumulation); returns the mean token loss.

    Each micro-batch is scaled by the step's total loss tokens, so every token weighs the same
    however the tokens fall into micro-batches.
    """
    tokens = max(1, sum(b.loss_tokens for b in batches))
    total = 0.0
    for batch in batches:
        loss_sum = batch_loss_sum(model, batch)
        (loss_sum / tokens).backward()
        total += float(loss_sum.detach())
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / tokens


def total_steps(config: TrainConfig, examples: int) -> int:
    """Optimizer steps of the run: max_steps, else whole epochs, repeated up to min_steps (at
    most max_epochs passes)."""
    if config.max_steps is not None:
        return config.max_steps
    per_epoch = steps_per_epoch(examples, config.batch_size, config.grad_accum)
    epochs = max(config.epochs, min(config.max_epochs, math.ceil(config.min_steps / per_epoch)))
    return epochs * per_epoch


class EpochLosses:
    """Token-weighted mean loss of each epoch (single batches are too noisy to read)."""

    def __init__(self, per_epoch: int) -> None:
        self.per_epoch, self.sums, self.tokens = per_epoch, list[float](), list[int]()

    def add(self, step: int, loss: float, tokens: int) -> None:
        """Count optimizer step `step` (from 0), its mean token loss and its loss tokens."""
        if step // self.per_epoch >= len(self.sums):
            self.sums.append(0.0)
            self.tokens.append(0)
        self.sums[-1] += loss * tokens
        self.tokens[-1] += tokens

    def means(self) -> list[float]:
        """Each epoch's mean loss (the last one partial when max_steps cut it)."""
        return [s / t if t else 0.0 for s, t in zip(self.sums, self.tokens, strict=True)]


def linear_schedule(total: int, warmup: int) -> Callable[[int], float]:
    """LR factor of 0-based step `s`: linear warmup to 1, then linear decay towards 0.

    Neither end is exactly 0, so no step is wasted (transformers' schedule starts at 0).
    """
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def run_steps(model: PeftModel, encoded: list[Encoded], config: TrainConfig, *, pad_id: int,
              device: torch.device, progress: ProgressFn | None) -> TrainResult:
    """The optimisation loop; the model's adapter is trained in place."""
    params = trainable_parameters(model)
    steps = total_steps(config, len(encoded))
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(steps, math.ceil(steps * config.warmup_ratio)))
    plan = step_plan([len(e.input_ids) for e in encoded], batch_size=config.batch_size,
                     grad_accum=config.grad_accum, seed=config.seed, total_steps=steps)
    result = TrainResult(0, len(encoded), 0, 0, 0.0, None, None)
    epochs = EpochLosses(steps_per_epoch(len(encoded), config.batch_size, config.grad_accum))
    torch.manual_seed(config.seed)  # LoRA dropout
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    for micro in plan:
        batches = [collate([encoded[i] for i in mb], pad_id).to(device) for mb in micro]
        loss = optimizer_step(model, batches, params, optimizer, config.max_grad_norm)
        scheduler.step()
        epochs.add(result.steps, loss, sum(b.loss_tokens for b in batches))
        result.steps += 1
        result.train_tokens += sum(b.tokens for b in batches)
        result.loss_tokens += sum(b.loss_tokens for b in batches)
        result.first_loss = loss if result.first_loss is None else result.first_loss
        result.final_loss = loss
        if progress is not None:
            progress(result.steps, steps, loss)
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu_start
    result.epoch_losses = epochs.means()
    return result


def _pad_id(tokenizer: Any) -> int:
    """Any id does for padding (it is masked and unlabelled); prefer the tokenizer's own."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def train_lora(*, base_model_path: Path, examples: Sequence[ChatExample], out_dir: Path,
               config: TrainConfig, parent_adapter: Path | None = None,
               progress: ProgressFn | None = None) -> TrainResult:
    """Train a LoRA on `examples` (loss on assistant tokens) and save it into `out_dir`.

    With `parent_adapter`, training continues from its weights and keeps its shape (rank,
    alpha, targets: `config.lora` is ignored); otherwise the adapter is fresh. Examples longer
    than `config.max_seq_len` are dropped and counted in the result. Deterministic for a seed on
    the same machine and thread count. Sets torch's thread count for the whole process.
    """
    threads = configure_threads(config.threads)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(base_model_path)
    encoded, dropped = encode_all(tokenizer, examples, config.max_seq_len)
    model = load_model(Path(base_model_path), config.lora, parent_adapter, dtype=dtype,
                       seed=config.seed).to(device)
    try:
        result = run_steps(model, encoded, config, pad_id=_pad_id(tokenizer), device=device,
                           progress=progress)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out_dir))
    finally:
        # A worker trains agent after agent: free this model now, not whenever the cyclic GC
        # gets to any reference cycle holding it, so two models never share the peak.
        del model
        gc.collect()
    result.dropped_too_long = dropped
    log.info("trained %d steps on %d examples (%d dropped) in %.1f s: %.0f tokens/s "
             "(%s, %s, %d threads), loss %.4f -> %.4f", result.steps, result.examples, dropped,
             result.seconds, result.tokens_per_s, device, dtype, threads,
             result.first_loss, result.final_loss)
    return result
