"""PunicaWrapperDenseCPU: vLLM's CPU punica wrapper with `add_lora_linear` in the dense form.

Only the linear layers' LoRA (q/k/v/o, gate/up/down: everything vLLM applies through
`add_lora_linear`) changes; embeddings, logits and the fully sharded path keep vLLM's own ops
(inherited). The packed weights are cached per layer and rebuilt when vLLM writes an adapter
slot: every in-place write bumps the stacked tensors' version counters.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from services.inference.cpu_lora.dense import (
    COMPUTE_DTYPE,
    PackedLoRA,
    apply_dense,
    pack,
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
    """PunicaWrapperCPU whose linear-layer LoRA is the dense masked form (see `dense`)."""

    def __init__(self, max_num_batched_tokens: int, max_batches: int,
                 device: torch.device | str, **kwargs: Any) -> None:
        super().__init__(max_num_batched_tokens, max_batches, device, **kwargs)
        self._packed: dict[int, tuple[tuple[torch.Tensor, ...], Versions, PackedLoRA]] = {}
        self._masks: dict[int, torch.Tensor] = {}
        self._unversioned_warned = False
        log.info("maft cpu_lora: dense multi-LoRA kernel active (PunicaWrapperDenseCPU)")

    def update_metadata(self, *args: Any, **kwargs: Any) -> None:
        """vLLM's per-step metadata update; also drops this step's cached token masks."""
        super().update_metadata(*args, **kwargs)
        self._masks.clear()

    def _mask(self, num_tokens: int) -> torch.Tensor:
        """The step's (tokens, slots) one-hot mask, built once per step."""
        if num_tokens not in self._masks:
            self._masks[num_tokens] = slot_mask(self.token_lora_indices, num_tokens,
                                                COMPUTE_DTYPE)
        return self._masks[num_tokens]

    def _pack(self, lora_a: tuple[torch.Tensor, ...],
              lora_b: tuple[torch.Tensor, ...]) -> PackedLoRA:
        """The layer's packed weights, rebuilt if any stacked tensor was written since."""
        tensors = (*lora_a, *lora_b)
        versions = _versions(tensors)
        if versions is None and not self._unversioned_warned:
            self._unversioned_warned = True
            log.warning("maft cpu_lora: LoRA weights have no version counter; repacking "
                        "every step (correct but slower)")
        cached = self._packed.get(id(lora_a[0]))
        if (cached is not None and versions is not None and cached[1] == versions
                and all(c is t for c, t in zip(cached[0], tensors, strict=True))):
            return cached[2]
        packed = pack(lora_a, lora_b)
        self._packed[id(lora_a[0])] = (tensors, versions, packed)
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
        mask = self._mask(x.shape[0])
        if mask.shape[1] == 0:  # no token uses an adapter
            return
        if scale != 1.0:
            mask = mask * scale
        y2d = y.view(-1, y.shape[-1])
        apply_dense(y2d, x, self._pack(lora_a_stacked, lora_b_stacked), mask, output_slices)
