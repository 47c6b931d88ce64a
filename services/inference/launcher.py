"""Turn InferenceSettings into a `vllm serve` command and exec it (this is glue, not a server).

Adapters are never listed on the command line: our resolver plugin (services.inference.
store_resolver) loads `<adapter store>/<lora_name>` on the first request naming it, on every
replica, with no coordination. vLLM consults resolvers only with runtime LoRA updating allowed,
which also mounts its load/unload endpoints: the Guard middleware (services.inference.guard)
refuses those, and asks for the inference key on every path but health and metrics.
"""

from __future__ import annotations

import logging
import os
import sys

from maft.adapter_store import normalized_model_path
from maft.hardware import cpu_dtype, is_cpu_build
from services.inference.cpu_lora import PLUGIN_NAME as CPU_LORA_PLUGIN
from services.inference.settings import InferenceSettings, get_settings
from services.inference.store_resolver import PLUGIN_NAME as RESOLVER_PLUGIN

log = logging.getLogger(__name__)

# vLLM's own resolvers: any name as a folder under a directory (`../` included), or the HF hub.
VLLM_RESOLVERS = ("lora_filesystem_resolver", "lora_hf_hub_resolver")
GUARD = "services.inference.guard.Guard"


def uses_cpu(settings: InferenceSettings) -> bool:
    """The device to configure for: the `device` setting, or the installed build when 'auto'."""
    return is_cpu_build() if settings.device == "auto" else settings.device == "cpu"


def _plugins(current: str | None, *, cpu_lora: bool = False) -> str:
    """VLLM_PLUGINS: `current` without vLLM's resolvers, plus ours; unset means only ours.

    An explicit list also keeps every other installed plugin off. `cpu_lora` adds maft's CPU
    LoRA kernel plugin (services.inference.cpu_lora); otherwise it is removed.
    """
    dropped = {*VLLM_RESOLVERS, CPU_LORA_PLUGIN}
    names = [n for n in (current or "").split(",") if n and n not in dropped]
    wanted = [RESOLVER_PLUGIN, *([CPU_LORA_PLUGIN] if cpu_lora else [])]
    return ",".join([*names, *(n for n in wanted if n not in names)])


def build_env(settings: InferenceSettings, *, cpu: bool,
              current_plugins: str | None = None) -> dict[str, str]:
    """The environment variables vLLM needs on top of the inherited ones."""
    env = {
        "VLLM_PLUGINS": _plugins(current_plugins,
                                 cpu_lora=cpu and settings.cpu_lora_kernel == "dense"),
        # Resolvers run only with it (vllm/entrypoints/serve/engine/serving.py, _check_model);
        # the endpoints it also mounts are refused by the Guard middleware.
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
    }
    if settings.inference_key:  # in the environment, not argv: `ps` would show it
        env["VLLM_API_KEY"] = settings.inference_key
    if cpu:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kvcache_gib)
        # The CPU platform always uses the multiprocess executor (vllm/platforms/cpu.py), whose
        # execute_model RPC waits this long (vllm/v1/executor/multiproc_executor.py).
        env["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] = str(settings.cpu_execute_model_timeout_s)
    return env


def build_args(settings: InferenceSettings, *, cpu: bool) -> list[str]:
    """The `vllm serve ...` argument list (the same flags for vllm-cpu and vllm)."""
    args = [
        "vllm", "serve", normalized_model_path(settings.model_dir),
        "--served-model-name", settings.base_model_name,
        "--enable-lora",
        "--max-lora-rank", str(settings.max_lora_rank),
        "--max-loras", str(settings.max_loras),
        "--max-cpu-loras", str(settings.max_cpu_loras),
        # vLLM's own "auto" takes the model's dtype, bf16 even where it is emulated.
        "--dtype", cpu_dtype(settings.dtype) if cpu else settings.dtype,
        "--max-model-len", str(settings.max_model_len),
        "--host", settings.host,
        "--port", str(settings.port),
        "--middleware", GUARD,
    ]
    if not cpu:
        args += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization),
                 "--tensor-parallel-size", str(settings.tensor_parallel_size)]
    return args + list(settings.extra_args)


def build_command(settings: InferenceSettings) -> tuple[list[str], dict[str, str]]:
    """The command line and the extra environment (merge it over os.environ) to run vLLM."""
    cpu = uses_cpu(settings)
    return (build_args(settings, cpu=cpu),
            build_env(settings, cpu=cpu, current_plugins=os.environ.get("VLLM_PLUGINS")))


def exec_argv(args: list[str]) -> list[str]:
    """`vllm ...` as this interpreter running services.inference.vllm_entry (same CLI).

    The `vllm` script of vllm-cpu 0.32.0 crashes on a version lookup; the entry module works
    around it and is a plain `vllm` under the GPU build. Using this interpreter also avoids
    depending on PATH.
    """
    return [sys.executable, "-m", "services.inference.vllm_entry", *args[1:]]


def main(settings: InferenceSettings | None = None) -> None:
    """Create the adapter store and replace this process with vLLM (SIGTERM then reaches it)."""
    settings = settings or get_settings()
    if not settings.model_dir.is_dir():
        raise SystemExit(f"model folder {settings.model_dir} does not exist; run "
                         "`python -m services.inference materialize` or set MAFT_MODEL_PATH")
    settings.adapter_dir.mkdir(parents=True, exist_ok=True)
    args, env = build_command(settings)
    log.info("exec %s", " ".join(args))
    argv = exec_argv(args)
    os.execve(argv[0], argv, {**os.environ, **env})
