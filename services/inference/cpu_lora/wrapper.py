"""PunicaWrapperDenseCPU: vLLM's CPU punica wrapper with the LoRA math in the dense form.

The linear layers (`add_lora_linear`: q/k/v/o, gate/up/down), the logits (`add_lora_logits`,
lm_head) and the embeddings (`add_lora_embedding`) use `dense`; the fully sharded path
(`add_shrink`/`add_expand`) keeps vLLM's ops (inherited). vLLM wraps every supported module,
targeted by an adapter or not, and its stock op then gathers zero weights per token: for
lm_head that is (tokens, vocab, max_rank) every step, base requests included. Here a layer
with no loaded weights (effective rank 0) costs one cache lookup.

Packed weights are cached per layer and rebuilt when vLLM writes an adapter slot: every
in-place write bumps the stacked tensors' version counters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from services.inference.cpu_lora.dense import (
    COMPUTE_DTYPE,
    PackedLoRA,
    apply_dense,
    apply_expand,
    pack,
    pack_expand,
    slot_mask,
)

log = logging.getLogger("vllm.maft_cpu_lora")

Versions = tuple[int, ...] | None


def _versions(tensors: tuple[torch.Tensor, ...]) -> Versions:
    """The tensors' version counters; None when they have none (inference tensors)."""
    try:
        return tuple(t._version for t in tensors)
    except RuntimeError:
        return None


class PunicaWrapperDenseCPU(PunicaWrapperCPU):
    """PunicaWrapperCPU whose LoRA math is the dense masked form (see `dense`)."""

    def __init__(self, max_num_batched_tokens: int, max_batches: int,
                 device: torch.device | str, **kwargs: Any) -> None:
        super().__init__(max_num_batched_tokens, max_batches, device, **kwargs)
        self._packed: dict[int, tuple[tuple[torch.Tensor, ...], Versions, PackedLoRA]] = {}
        self._masks: dict[tuple[str, int], torch.Tensor] = {}
        self._unversioned_warned = False
        log.info("maft cpu_lora: dense multi-LoRA kernel active (PunicaWrapperDenseCPU)")

    def update_metadata(self, *args: Any, **kwargs: Any) -> None:
        """vLLM's per-step metadata update; also drops this step's cached masks."""
        super().update_metadata(*args, **kwargs)
        self._masks.clear()

    def _mask(self, kind: str, rows: int) -> torch.Tensor:
        """The step's (rows, slots) one-hot mask by token ("token") or by request
        ("sampler": the logits rows), built once per step."""
        key = (kind, rows)
        if key not in self._masks:
            indices = self.token_lora_indices if kind == "token" else self.sampler_indices
            self._masks[key] = slot_mask(indices, rows, COMPUTE_DTYPE)
        return self._masks[key]

    def _cached(self, tensors: tuple[torch.Tensor, ...],
                build: Callable[[], PackedLoRA]) -> PackedLoRA:
        """The layer's packed weights, rebuilt if any of its stacked tensors was written."""
        versions = _versions(tensors)
        if versions is None and not self._unversioned_warned:
            self._unversioned_warned = True
            log.warning("maft cpu_lora: LoRA weights have no version counter; repacking "
                        "every step (correct but slower)")
        cached = self._packed.get(id(tensors[0]))
        if (cached is not None and versions is not None and cached[1] == versions
                and all(c is t for c, t in zip(cached[0], tensors, strict=True))):
            return cached[2]
        packed = build()
        self._packed[id(tensors[0])] = (tensors, versions, packed)
        return packed

    def add_lora_linear(self, y: torch.Tensor, x: torch.Tensor,
                        lora_a_stacked: tuple[torch.Tensor, ...],
                        lora_b_stacked: tuple[torch.Tensor, ...], scale: float,
                        output_slices: tuple[int, ...], *,
                        buffer: tuple[torch.Tensor, ...] | None = None,
                        **kwargs: Any) -> None:
        """y[:, slice i] += scale * x @ A_i[slot]^T @ B_i[slot]^T per token, in place."""
        assert len(lora_a_stacked) == len(lora_b_stacked) == len(output_slices)
        x = x.view(-1, x.shape[-1])
        mask = self._mask("token", x.shape[0])
        if mask.shape[1] == 0:  # no token uses an adapter
            return
        packed = self._cached((*lora_a_stacked, *lora_b_stacked),
                              lambda: pack(lora_a_stacked, lora_b_stacked))
        apply_dense(y.view(-1, y.shape[-1]), x, packed, mask * scale if scale != 1 else mask,
                    output_slices)

    def add_lora_logits(self, y: torch.Tensor, x: torch.Tensor, lora_a_stacked: torch.Tensor,
                        lora_b_stacked: torch.Tensor, scale: float, *,
                        buffer: torch.Tensor | None = None, **kwargs: Any) -> None:
        """Logits y (requests, vocab) += scale * x @ A[slot]^T @ B[slot]^T per request."""
        y2d, x2d = y.view(-1, y.shape[-1]), x.view(-1, x.shape[-1])
        mask = self._mask("sampler", x2d.shape[0])
        if mask.shape[1] == 0:
            return
        packed = self._cached((lora_a_stacked, lora_b_stacked),
                              lambda: pack((lora_a_stacked,), (lora_b_stacked,)))
        apply_dense(y2d, x2d, packed, mask * scale if scale != 1 else mask,
                    (min(y2d.shape[1], lora_b_stacked.shape[2]),))

    def add_lora_embedding(self, y: torch.Tensor, x: torch.Tensor,
                           lora_b_stacked: torch.Tensor, add_inputs: bool = True,
                           **kwargs: Any) -> None:
        """Embeddings y (tokens, hidden) += x_t @ B[slot]^T, x: the looked-up A rows."""
        if not add_inputs:
            super().add_lora_embedding(y, x, lora_b_stacked, add_inputs, **kwargs)
            return
        mask = self._mask("token", x.shape[0])
        if mask.shape[1] == 0:
            return
        apply_expand(y, x, self._cached((lora_b_stacked,), lambda: pack_expand(lora_b_stacked)),
                     mask)
