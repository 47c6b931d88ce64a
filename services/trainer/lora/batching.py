"""Length-grouped, seeded batches of encoded examples, and their padding into tensors.

Sorting by length inside shuffled groups keeps each batch's examples of similar length, so
little compute goes to padding, while the seeded shuffles keep epochs different and runs
reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from services.trainer.lora.chat_encoding import IGNORE_INDEX

GROUP_BATCHES = 16  # batches per length-sorted group: bigger groups pad less, shuffle less


@dataclass(frozen=True)
class Encoded:
    """One tokenized example."""

    input_ids: list[int]
    labels: list[int]

    @property
    def loss_tokens(self) -> int:
        """Labelled positions that a causal LM predicts (position 0 has no context)."""
        return sum(label != IGNORE_INDEX for label in self.labels[1:])


@dataclass
class Batch:
    """Right-padded tensors of a few examples, with their token counts."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    tokens: int
    loss_tokens: int

    def to(self, device: torch.device) -> Batch:
        """The same batch on `device`."""
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.labels.to(device), self.tokens, self.loss_tokens)


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def plan_epoch(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Example indices of one epoch's batches, grouped by length, in shuffled order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for group in _chunks(order, batch_size * GROUP_BATCHES):
        group.sort(key=lambda i: lengths[i], reverse=True)  # stable: ties keep shuffled order
        batches.extend(_chunks(group, batch_size))
    rng.shuffle(batches)
    return batches


def steps_per_epoch(examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one pass over `examples` (the last batches may be smaller)."""
    return math.ceil(math.ceil(examples / batch_size) / grad_accum)


def step_plan(lengths: Sequence[int], *, batch_size: int, grad_accum: int, seed: int,
              total_steps: int) -> Iterator[list[list[int]]]:
    """`total_steps` optimizer steps, each a list of micro-batches of example indices."""
    rng = random.Random(seed)
    done = 0
    while done < total_steps:
        batches = plan_epoch(lengths, batch_size, rng)
        for step in _chunks(range(len(batches)), grad_accum):
            yield [batches[i] for i in step]
            done += 1
            if done == total_steps:
                return


def collate(examples: Sequence[Encoded], pad_id: int) -> Batch:
    """Right-pad `examples` to the longest; padding is masked out and carries no loss."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return Batch(ids, mask, labels, tokens=int(mask.sum()),
                 loss_tokens=sum(e.loss_tokens for e in examples))
