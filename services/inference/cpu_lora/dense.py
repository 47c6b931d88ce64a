"""The dense masked multi-LoRA form: every loaded adapter's A in one matmul, a per-token mask.

vLLM's CPU path gathers one A and one B per token (`weights[indices]`, a copy of rank x width
per token and slice) and applies them with einsum. Here the adapters' weights are packed once
(re-packed only when vLLM writes a slot) and a step costs, per LoRA layer:

    h = x @ A_packed^T                  one matmul over all active slots and slices
    h *= onehot(token slot)             tokens keep only their own adapter's rank block
    y[:, slice] += h[slice] @ B_packed  one matmul per output slice (q, k, v: three)

Slots are used from 0 upwards, so only the first `slots` (highest slot in the batch + 1) are
computed, and ranks are cut to the highest non-zero rank row over the loaded adapters (vLLM pads
every adapter to max_lora_rank with zeros). A token with slot -1 (a base-model request) gets a
zero mask row: exactly no delta.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

# LoRA math runs in fp32 whatever the model's dtype (vLLM's CPU op also shrinks in fp32): on CPUs
# small fp32 matmuls are faster than bf16 ones, and the delta is rounded only once.
COMPUTE_DTYPE = torch.float32

@dataclass(frozen=True)
class PackedLoRA:
    """One LoRA layer's adapters in the dense layout.

    `a_t`: (slots * n_slices * rank, in), rows ordered slot, slice, rank: the first
    `s * n_slices * rank` rows are slots 0..s-1. `b`: per slice, (slots * rank, out_slice),
    rows ordered slot, rank. `rank` is the effective (unpadded) rank; 0 when nothing is loaded.
    """

    a_t: torch.Tensor
    b: tuple[torch.Tensor, ...]
    rank: int

    @property
    def n_slices(self) -> int:
        """Output slices of the layer (3 for a packed q/k/v projection, 1 for o_proj)."""
        return len(self.b)


def effective_rank(lora_a: Sequence[torch.Tensor]) -> int:
    """The highest rank row that is non-zero in any slot and slice (0 if all are zero)."""
    rows = torch.zeros(lora_a[0].shape[2], dtype=torch.bool, device=lora_a[0].device)
    for a in lora_a:  # (slots, 1, max_rank, in)
        rows |= (a != 0).any(dim=-1).flatten(0, 1).any(dim=0)
    nonzero = torch.nonzero(rows)
    return int(nonzero[-1].item()) + 1 if nonzero.numel() else 0


def pack(lora_a: Sequence[torch.Tensor], lora_b: Sequence[torch.Tensor]) -> PackedLoRA:
    """Pack vLLM's stacked weights, A (slots, 1, max_rank, in) and B (slots, 1, out, max_rank)
    per slice, into the dense layout (copies; the cut rank drops the zero padding)."""
    rank = effective_rank(lora_a)
    slots = lora_a[0].shape[0]
    a = torch.stack([t[:, 0, :rank, :] for t in lora_a], dim=1)  # (slots, slices, rank, in)
    a_t = a.reshape(slots * len(lora_a) * rank, a.shape[-1]).to(COMPUTE_DTYPE).contiguous()
    b = tuple(t[:, 0, :, :rank].permute(0, 2, 1).reshape(slots * rank, t.shape[2])
              .to(COMPUTE_DTYPE).contiguous() for t in lora_b)
    return PackedLoRA(a_t, b, rank)


def slot_mask(indices: torch.Tensor, num_tokens: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot (tokens, slots) of each token's adapter slot; slot -1 and tokens past the end
    of `indices` get an all-zero row. `slots` is the highest slot used + 1 (0: no LoRA)."""
    idx = indices[:num_tokens]
    slots = int(idx.max().item()) + 1 if idx.numel() else 0
    mask = torch.zeros(num_tokens, max(slots, 0), dtype=dtype, device=indices.device)
    if slots > 0:
        rows = torch.arange(idx.numel(), device=indices.device)
        used = idx >= 0
        mask[rows[used], idx[used]] = 1
    return mask


def apply_dense(y: torch.Tensor, x: torch.Tensor, packed: PackedLoRA, mask: torch.Tensor,
                output_slices: Sequence[int], offset: int = 0) -> None:
    """y[:, offset + slice i] += per-token LoRA delta of slice i, in place (y: (T, out), x:
    (T, in), mask from `slot_mask` for these T tokens)."""
    slots, rank, n = mask.shape[1], packed.rank, packed.n_slices
    if slots == 0 or rank == 0:
        return
    h = x.to(COMPUTE_DTYPE) @ packed.a_t[: slots * n * rank].t()  # (T, slots * n * rank)
    h = h.view(-1, slots, n * rank).mul_(mask.unsqueeze(-1))
    if n > 1:  # slice-major, so each slice's (T, slots * rank) block is one strided matrix
        h = h.view(-1, slots, n, rank).transpose(1, 2).reshape(-1, n, slots * rank)
    else:
        h = h.view(-1, 1, slots * rank)
    for i, size in enumerate(output_slices):
        out, b = y.narrow(1, offset, size), packed.b[i][: slots * rank]
        if y.dtype == COMPUTE_DTYPE:
            out.addmm_(h[:, i], b)
        else:  # bf16/fp16 model: the delta in fp32, rounded once when added (as vLLM's op)
            out.add_(h[:, i] @ b)
        offset += size
