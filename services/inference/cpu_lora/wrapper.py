"""PunicaWrapperDenseCPU: vLLM's CPU punica wrapper with the LoRA math in the dense form.

The linear layers (`add_lora_linear`: q/k/v/o, gate/up/down), the logits (`add_lora_logits`,
lm_head) and the embeddings (`add_lora_embedding`) use `dense`; the fully sharded path
(`add_shrink`/`add_expand`) keeps vLLM's ops (inherited). vLLM wraps every supported module,
targeted by an adapter or not, and its stock op then gathers zero weights per token: for
lm_head that is (tokens, vocab, max_rank) every step, base requests included. Here a layer
with no loaded weights (effective rank 0) costs one cache lookup.

With torch.compile kept on (MAFT_CPU_LORA_COMPILE=1, see the package), the layers inside
the compiled forward call the math through the custom ops of `ops` and pass vLLM's whole index
buffers: a traced Python attribute (the batch's length) would be frozen into the graph.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from services.inference.cpu_lora import COMPILE_ENV
from services.inference.cpu_lora.ops import DENSE, embedding_op, linear_op

log = logging.getLogger("vllm.maft_cpu_lora")


class PunicaWrapperDenseCPU(PunicaWrapperCPU):
    """PunicaWrapperCPU whose LoRA math is the dense masked form (see `dense`)."""

    def __init__(self, max_num_batched_tokens: int, max_batches: int,
                 device: torch.device | str, **kwargs: Any) -> None:
        super().__init__(max_num_batched_tokens, max_batches, device, **kwargs)
        self.compiled = os.environ.get(COMPILE_ENV) == "1"
        log.info("maft cpu_lora: dense multi-LoRA kernel active (PunicaWrapperDenseCPU%s)",
                 ", torch.compile kept on" if self.compiled else "")

    def add_lora_linear(self, y: torch.Tensor, x: torch.Tensor,
                        lora_a_stacked: tuple[torch.Tensor, ...],
                        lora_b_stacked: tuple[torch.Tensor, ...], scale: float,
                        output_slices: tuple[int, ...], *,
                        buffer: tuple[torch.Tensor, ...] | None = None,
                        **kwargs: Any) -> None:
        """y[:, slice i] += scale * x @ A_i[slot]^T @ B_i[slot]^T per token, in place."""
        assert len(lora_a_stacked) == len(lora_b_stacked) == len(output_slices)
        weights = [*lora_a_stacked, *lora_b_stacked]
        if self.compiled:
            linear_op(y, x, self._token_lora_indices, weights, list(output_slices),
                      float(scale))
        else:
            DENSE.linear(y, x, self._token_lora_indices, weights, output_slices, scale,
                         self.indices_len[0])

    def add_lora_logits(self, y: torch.Tensor, x: torch.Tensor, lora_a_stacked: torch.Tensor,
                        lora_b_stacked: torch.Tensor, scale: float, *,
                        buffer: torch.Tensor | None = None, **kwargs: Any) -> None:
        """Logits y (requests, vocab) += scale * x @ A[slot]^T @ B[slot]^T per request
        (vLLM computes logits outside the compiled forward: always eager)."""
        width = min(y.shape[-1], lora_b_stacked.shape[2])
        DENSE.linear(y, x, self._sampler_indices, [lora_a_stacked, lora_b_stacked], (width,),
                     scale, self.indices_len[1])

    def add_lora_embedding(self, y: torch.Tensor, x: torch.Tensor,
                           lora_b_stacked: torch.Tensor, add_inputs: bool = True,
                           **kwargs: Any) -> None:
        """Embeddings y (tokens, hidden) += x_t @ B[slot]^T, x: the looked-up A rows."""
        if not add_inputs:
            super().add_lora_embedding(y, x, lora_b_stacked, add_inputs, **kwargs)
        elif self.compiled:
            embedding_op(y, x, self._token_lora_indices, lora_b_stacked)
        else:
            DENSE.embedding(y, x, self._token_lora_indices, lora_b_stacked, self.indices_len[0])
