"""The LoRAResolver of the plugin `maft_lora_resolver` (see the package docstring)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from vllm.lora.request import LoRARequest
from vllm.lora.resolver import LoRAResolver

from maft.adapter_store import AdapterStore, normalized_model_path
from maft.exceptions import AdapterInvalidError
from services.inference.settings import InferenceSettings, get_settings

log = logging.getLogger("vllm.maft_lora_resolver")


class StoreResolver(LoRAResolver):
    """Resolves a `model` name to its folder in the adapter store, or to nothing."""

    def __init__(self, store: Path, *, max_rank: int,
                 extra_names: re.Pattern[str] | None = None) -> None:
        self.store = AdapterStore(Path(normalized_model_path(store)))
        self.max_rank = max_rank
        self.extra_names = extra_names

    @classmethod
    def from_settings(cls, settings: InferenceSettings | None = None) -> StoreResolver:
        """The resolver for this server's MAFT_* settings (store, max rank, name pattern)."""
        s = settings or get_settings()
        pattern = re.compile(s.lora_name_pattern) if s.lora_name_pattern else None
        return cls(s.adapter_dir, max_rank=s.max_lora_rank, extra_names=pattern)

    async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
        """The store's adapter `lora_name` for the model `base_model_name`, else None (404)."""
        try:
            folder = self.store.servable(lora_name, max_rank=self.max_rank,
                                         base_model_path=base_model_name,
                                         extra_names=self.extra_names)
        except (AdapterInvalidError, OSError) as exc:
            # Logged: an operator sees why a name 404s (a typo, a bad adapter, a symlink).
            log.warning("not resolving LoRA %r: %s", lora_name, exc)
            return None
        # vLLM replaces lora_int_id with its own counter (OpenAIServingModels.resolve_lora).
        return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=str(folder))
