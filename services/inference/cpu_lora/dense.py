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


def _last_nonzero(flags: torch.Tensor) -> int:
    """1 + the index of the last True in a 1-d bool tensor; 0 if none is."""
    nonzero = torch.nonzero(flags)
    return int(nonzero[-1].item()) + 1 if nonzero.numel() else 0


def effective_rank(lora_a: Sequence[torch.Tensor]) -> int:
    """The highest rank row of A (slots, 1, max_rank, in) non-zero in any slot and slice."""
    rows = torch.zeros(lora_a[0].shape[2], dtype=torch.bool, device=lora_a[0].device)
    for a in lora_a:
        rows |= (a != 0).any(dim=-1).flatten(0, 1).any(dim=0)
    return _last_nonzero(rows)


def expand_rank(lora_b: torch.Tensor) -> int:
    """The highest rank column of B (slots, 1, out, max_rank) non-zero in any slot."""
    return _last_nonzero((lora_b != 0).any(dim=2).flatten(0, 1).any(dim=0))


def _pack_b(lora_b: torch.Tensor, rank: int) -> torch.Tensor:
    """B (slots, 1, out, max_rank) as (slots * rank, out), rows ordered slot, rank."""
    slots, out = lora_b.shape[0], lora_b.shape[2]
    return (lora_b[:, 0, :, :rank].permute(0, 2, 1).reshape(slots * rank, out)
            .to(COMPUTE_DTYPE).contiguous())


def pack(lora_a: Sequence[torch.Tensor], lora_b: Sequence[torch.Tensor]) -> PackedLoRA:
    """Pack vLLM's stacked weights, A (slots, 1, max_rank, in) and B (slots, 1, out, max_rank)
    per slice, into the dense layout (copies; the cut rank drops the zero padding)."""
    rank = effective_rank(lora_a)
    slots = lora_a[0].shape[0]
    a = torch.stack([t[:, 0, :rank, :] for t in lora_a], dim=1)  # (slots, slices, rank, in)
    a_t = a.reshape(slots * len(lora_a) * rank, a.shape[-1]).to(COMPUTE_DTYPE).contiguous()
    return PackedLoRA(a_t, tuple(_pack_b(t, rank) for t in lora_b), rank)


def pack_expand(lora_b: torch.Tensor) -> PackedLoRA:
    """Pack an expand-only B (the embedding layer's: its A rows come looked up per token)."""
    rank = expand_rank(lora_b)
    return PackedLoRA(lora_b.new_empty(0), (_pack_b(lora_b, rank),), rank)


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


def _add_product(out: torch.Tensor, h: torch.Tensor, b: torch.Tensor) -> None:
    """out += h @ b in place; h and b in COMPUTE_DTYPE, out in the model's dtype."""
    if out.dtype == COMPUTE_DTYPE:
        out.addmm_(h, b)
    else:  # bf16/fp16 model: the delta in fp32, rounded once when added (as vLLM's op)
        out.add_(h @ b)


def apply_dense(y: torch.Tensor, x: torch.Tensor, packed: PackedLoRA, mask: torch.Tensor,
                output_slices: Sequence[int]) -> None:
    """y[:, slice i] += per-token LoRA delta of slice i, in place (y: (T, out), x: (T, in),
    mask from `slot_mask` for these T tokens; a slice may be narrower than its B)."""
    slots, rank, n = mask.shape[1], packed.rank, packed.n_slices
    if slots == 0 or rank == 0:
        return
    h = x.to(COMPUTE_DTYPE) @ packed.a_t[: slots * n * rank].t()  # (T, slots * n * rank)
    h = h.view(-1, slots, n * rank).mul_(mask.unsqueeze(-1))
    if n > 1:  # slice-major, so each slice's (T, slots * rank) block is one strided matrix
        h = h.view(-1, slots, n, rank).transpose(1, 2).reshape(-1, n, slots * rank)
    else:
        h = h.view(-1, 1, slots * rank)
    offset = 0
    for i, size in enumerate(output_slices):
        _add_product(y.narrow(1, offset, size), h[:, i], packed.b[i][: slots * rank, :size])
        offset += size


def apply_expand(y: torch.Tensor, x: torch.Tensor, packed: PackedLoRA,
                 mask: torch.Tensor) -> None:
    """y += x_t @ B[slot_t]^T per token, in place (x: (T, max_rank), already A-projected)."""
    slots, rank = mask.shape[1], packed.rank
    if slots == 0 or rank == 0:
        return
    h = mask.unsqueeze(-1) * x[:, :rank].to(COMPUTE_DTYPE).unsqueeze(1)  # (T, slots, rank)
    size = min(y.shape[1], packed.b[0].shape[1])
    _add_product(y.narrow(1, 0, size), h.reshape(-1, slots * rank),
                 packed.b[0][: slots * rank, :size])
