"""The inference server an experiment talks to: one already running, or our own, started the way
`maft up` starts it (the inference service's command, `maft.processes.Child`) and stopped at the
end. The harness never imports the inference service."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from experiment.adapters import NAME_PATTERN
from experiment.config import Runtime
from maft.adapter_store import normalized_model_path
from maft.hardware import cpu_dtype, is_cpu_build
from maft.processes import Child, clean_env, free_port, http_ok, inference_argv


@dataclass(frozen=True)
class Endpoint:
    """How to reach the server and what it was started with."""

    url: str
    served_model_path: str  # the --model string (adapters must name it as their base)
    base_name: str  # --served-model-name: the model name of the un-finetuned agents
    dtype: str | None = None  # what our own server was started with (None: not ours)
    api_key: str | None = None  # a running server's inference key (MAFT_INFERENCE_API_KEY)


def served_dtype(name: str) -> str:
    """The dtype the launcher gives vLLM for `name` ("auto" is resolved on CPUs)."""
    return cpu_dtype(name) if is_cpu_build() else name


def server_env(runtime: Runtime, port: int, seed: int) -> dict[str, str]:
    """The launcher's MAFT_* settings for our own server."""
    env = clean_env(
        model_path=runtime.model_path, adapter_store=runtime.store_dir,
        base_model_name=runtime.base_model_name, host="127.0.0.1", port=port,
        max_lora_rank=runtime.max_lora_rank, max_loras=runtime.max_loras,
        max_model_len=runtime.max_model_len, dtype=runtime.inference_dtype,
        cpu_kvcache_gib=runtime.cpu_kvcache_gib,
        tensor_parallel_size=runtime.tensor_parallel_size,
        gpu_memory_utilization=runtime.gpu_memory_utilization,
        extra_args=json.dumps(["--seed", str(seed)]), lora_name_pattern=NAME_PATTERN)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # use every core (see tests' fixture)
    return env


@contextmanager
def inference(runtime: Runtime, seed: int) -> Iterator[Endpoint]:
    """The running server named by --inference-url, or our own for the duration of the run."""
    if runtime.inference_url:
        served = runtime.served_model_path or normalized_model_path(runtime.model_path)
        yield Endpoint(runtime.inference_url.rstrip("/"), served, runtime.base_model_name,
                       api_key=os.environ.get("MAFT_INFERENCE_API_KEY"))
        return
    port = free_port()
    runtime.store_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    server = Child("inference", inference_argv(), server_env(runtime, port, seed),
                   runtime.out_dir / "inference.log").start()
    try:
        server.wait_until(lambda: http_ok(f"{url}/health"), runtime.startup_timeout_s, poll=1)
        yield Endpoint(url, normalized_model_path(runtime.model_path), runtime.base_model_name,
                       served_dtype(runtime.inference_dtype))
    finally:
        server.stop()
