"""vLLM general plugin `maft_cpu_lora`: a faster multi-LoRA kernel for vLLM's CPU platform.

Registered under the `vllm.general_plugins` entry point (pyproject.toml); vLLM calls
`register()` in every process (API server, engine core, workers) when VLLM_PLUGINS names the
plugin or is unset. On the CPU platform it points the platform's punica wrapper at
`PunicaWrapperDenseCPU`; on any other platform it does nothing, so GPUs keep vLLM's kernels.
The launcher adds the plugin on CPU unless MAFT_CPU_LORA_KERNEL=stock.

The engine logs `Using PunicaWrapperDenseCPU.` (vLLM's own line) and
`maft cpu_lora: dense multi-LoRA kernel active` when the wrapper is built; the stock path logs
`Using PunicaWrapperCPU.`.

With MAFT_CPU_LORA_COMPILE=1 (experimental) the CPU platform keeps torch.compile on although
LoRA is enabled (vLLM turns it off), and the wrapper calls its math through custom ops.
"""

from __future__ import annotations

import logging
import os
from typing import Any

PLUGIN_NAME = "maft_cpu_lora"
WRAPPER_QUALNAME = "services.inference.cpu_lora.wrapper.PunicaWrapperDenseCPU"
ACTIVE_LOG_LINE = "maft cpu_lora: dense multi-LoRA kernel active"
COMPILE_ENV = "MAFT_CPU_LORA_COMPILE"

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
    if os.environ.get(COMPILE_ENV) == "1":
        _keep_compile(platform_cls)
    platform_cls._maft_cpu_lora = True  # type: ignore[attr-defined]
    log.debug("maft cpu_lora: CPU punica wrapper -> %s", WRAPPER_QUALNAME)


def _keep_compile(platform_cls: Any) -> None:
    """Make the platform's config check leave torch.compile on when LoRA is enabled.

    The check sets the CPU compile mode, then turns it off if `lora_config` is set (its only
    use of it); it runs with `lora_config` hidden and restored.
    """
    original = platform_cls.check_and_update_config

    def check_and_update_config(cls: type, vllm_config: Any) -> None:
        lora_config = vllm_config.lora_config
        vllm_config.lora_config = None
        try:
            original(vllm_config)
        finally:
            vllm_config.lora_config = lora_config

    platform_cls.check_and_update_config = classmethod(check_and_update_config)
    log.info("maft cpu_lora: torch.compile kept on with LoRA (%s=1)", COMPILE_ENV)


def _dense_wrapper(cls: type) -> str:
    """The replacement `get_punica_wrapper` of the CPU platform class."""
    return WRAPPER_QUALNAME
