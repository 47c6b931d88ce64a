"""The dense LoRA entry points with their caches, and the same as torch custom ops.

`DENSE` (one per process) holds the packed weights of every LoRA layer, rebuilt when vLLM writes
an adapter slot (every in-place write bumps a tensor's version counter), and the step's slot
masks, rebuilt when vLLM rewrites its index buffer (same mechanism). Entries are found by data
pointer and hold weak references, so a tensor that reuses a freed one's memory is not mistaken
for it.

The custom ops `maft_cpu_lora::linear` / `::embedding` make the LoRA math opaque to
torch.compile: traced once (vLLM's CPU compile mode drops guards), Python branches such as "no
token uses an adapter" would otherwise be frozen into the graph with the trace's batch.
"""

# No `from __future__ import annotations`: torch.library reads the op schema from the hints.

import logging
import weakref
from collections.abc import Callable, Sequence

import torch

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


def _version(tensor: torch.Tensor) -> int | None:
    """The tensor's version counter; None for inference tensors (they have none)."""
    try:
        return int(tensor._version)
    except RuntimeError:
        return None


Refs = tuple[weakref.ref[torch.Tensor], ...]


def _same(refs: Refs, tensors: Sequence[torch.Tensor]) -> bool:
    """Whether the weak references point at exactly these tensor objects."""
    return len(refs) == len(tensors) and all(r() is t for r, t in zip(refs, tensors, strict=True))


class DenseLoRA:
    """Packed weights per LoRA layer and slot masks per step, cached by version counters."""

    def __init__(self) -> None:
        self._packed: dict[int, tuple[Refs, tuple[int | None, ...], PackedLoRA]] = {}
        self._masks: dict[tuple[int, int], tuple[Refs, int | None, torch.Tensor]] = {}
        self._warned = False

    def packed(self, tensors: Sequence[torch.Tensor],
               build: Callable[[], PackedLoRA]) -> PackedLoRA:
        """The layer's packed weights, rebuilt if any of its stacked tensors was written."""
        versions = tuple(_version(t) for t in tensors)
        if None in versions and not self._warned:
            self._warned = True
            log.warning("maft cpu_lora: LoRA weights have no version counter; repacking "
                        "every step (correct but slower)")
        cached = self._packed.get(tensors[0].data_ptr())
        if (cached is not None and None not in versions and cached[1] == versions
                and _same(cached[0], tensors)):
            return cached[2]
        result = build()
        self._packed[tensors[0].data_ptr()] = (tuple(weakref.ref(t) for t in tensors),
                                               versions, result)
        return result

    def mask(self, indices: torch.Tensor, rows: int, length: int | None = None) -> torch.Tensor:
        """(rows, slots) one-hot of vLLM's slot per row from its index buffer `indices`; rows
        past `length` (when given) have no adapter."""
        key, version = (indices.data_ptr(), rows), _version(indices)
        cached = self._masks.get(key)
        if (cached is not None and version is not None and cached[1] == version
                and _same(cached[0], [indices])):
            return cached[2]
        if cached is not None and cached[1] != version:  # a new step: drop the old masks
            self._masks = {k: v for k, v in self._masks.items() if v[1] == version}
        valid = indices if length is None else indices[:length]
        mask = slot_mask(valid, rows, COMPUTE_DTYPE)
        self._masks[key] = ((weakref.ref(indices),), version, mask)
        return mask

    def linear(self, y: torch.Tensor, x: torch.Tensor, indices: torch.Tensor,
               weights: Sequence[torch.Tensor], output_slices: Sequence[int],
               scale: float, length: int | None = None) -> None:
        """y[:, slice i] += scale * x @ A_i[slot]^T @ B_i[slot]^T per row; weights = A..., B...
        (indices: vLLM's index buffer, valid up to `length` when given)."""
        x2d = x.view(-1, x.shape[-1])
        mask = self.mask(indices, x2d.shape[0], length)
        if mask.shape[1] == 0:  # no row uses an adapter
            return
        n = len(weights) // 2
        packed = self.packed(weights, lambda: pack(weights[:n], weights[n:]))
        apply_dense(y.view(-1, y.shape[-1]), x2d, packed, mask * scale if scale != 1 else mask,
                    output_slices)

    def embedding(self, y: torch.Tensor, x: torch.Tensor, indices: torch.Tensor,
                  lora_b: torch.Tensor, length: int | None = None) -> None:
        """y += x_t @ B[slot_t]^T per token (x: the looked-up A rows, (tokens, max_rank))."""
        mask = self.mask(indices, x.shape[0], length)
        if mask.shape[1] == 0:
            return
        apply_expand(y, x, self.packed((lora_b,), lambda: pack_expand(lora_b)), mask)


DENSE = DenseLoRA()


@torch.library.custom_op("maft_cpu_lora::linear", mutates_args=("y",))
def linear_op(y: torch.Tensor, x: torch.Tensor, indices: torch.Tensor,
              weights: list[torch.Tensor], output_slices: list[int], scale: float) -> None:
    """DENSE.linear as an op torch.compile does not trace into."""
    DENSE.linear(y, x, indices, weights, output_slices, scale)


@linear_op.register_fake
def _linear_fake(y: torch.Tensor, x: torch.Tensor, indices: torch.Tensor,
                 weights: list[torch.Tensor], output_slices: list[int], scale: float) -> None:
    return None


@torch.library.custom_op("maft_cpu_lora::embedding", mutates_args=("y",))
def embedding_op(y: torch.Tensor, x: torch.Tensor, indices: torch.Tensor,
                 lora_b: torch.Tensor) -> None:
    """DENSE.embedding as an op torch.compile does not trace into."""
    DENSE.embedding(y, x, indices, lora_b)


@embedding_op.register_fake
def _embedding_fake(y: torch.Tensor, x: torch.Tensor, indices: torch.Tensor,
                    lora_b: torch.Tensor) -> None:
    return None
