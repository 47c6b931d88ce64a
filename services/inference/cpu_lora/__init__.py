"""vLLM general plugin `maft_cpu_lora`: a faster multi-LoRA kernel for vLLM's CPU platform.

Registered under the `vllm.general_plugins` entry point (pyproject.toml); vLLM calls
`register()` in every process (API server, engine core, workers) when VLLM_PLUGINS names the
plugin or is unset. On the CPU platform it points the platform's punica wrapper at
`PunicaWrapperDenseCPU`; on any other platform it does nothing, so GPUs keep vLLM's kernels.
The launcher adds the plugin on CPU unless MAFT_CPU_LORA_KERNEL=stock.

The engine logs `Using PunicaWrapperDenseCPU.` (vLLM's own line) and
`maft cpu_lora: dense multi-LoRA kernel active` when the wrapper is built; the stock path logs
`Using PunicaWrapperCPU.`.
"""

from __future__ import annotations

import logging

PLUGIN_NAME = "maft_cpu_lora"
WRAPPER_QUALNAME = "services.inference.cpu_lora.wrapper.PunicaWrapperDenseCPU"
ACTIVE_LOG_LINE = "maft cpu_lora: dense multi-LoRA kernel active"

log = logging.getLogger("vllm.maft_cpu_lora")


def register() -> None:
    """Entry point: on vLLM's CPU platform, use the dense LoRA wrapper; elsewhere a no-op.

    Idempotent (vLLM may load plugins more than once per process).
    """
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    platform_cls = type(current_platform)
    if getattr(platform_cls, "_maft_cpu_lora", False):
        return
    platform_cls.get_punica_wrapper = classmethod(_dense_wrapper)  # type: ignore[assignment,method-assign]
    platform_cls._maft_cpu_lora = True  # type: ignore[attr-defined]
    log.debug("maft cpu_lora: CPU punica wrapper -> %s", WRAPPER_QUALNAME)


def _dense_wrapper(cls: type) -> str:
    """The replacement `get_punica_wrapper` of the CPU platform class."""
    return WRAPPER_QUALNAME
