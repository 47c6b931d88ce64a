"""vLLM general plugin `maft_lora_resolver`: adapters resolve only from the adapter store.

It replaces vLLM's `lora_filesystem_resolver`, which serves any `model` name as a folder under
the store (`../../elsewhere/x` included). Ours resolves only the store's own names
(`gen-<i>@v<n>`, `crit-<i>@v<n>`, plus MAFT_LORA_NAME_PATTERN, e.g. the experiment's `xp-...`),
only to folders directly inside the store once symlinks are followed, and only adapters that
`AdapterStore.validate` accepts for this server's model (maft.adapter_store.AdapterStore.servable).

Registered twice over, idempotently: under the `vllm.general_plugins` entry point (pyproject.toml;
the launcher names it in VLLM_PLUGINS) and by services.inference.vllm_entry before vLLM's CLI
starts. The second covers installs whose entry-point metadata predates the plugin (an editable
install is not refreshed by a `git pull`); without it no adapter would resolve at all. vLLM
consults resolvers only in its API server process, which is the process vllm_entry runs in
(resolvers need runtime LoRA updating, which vLLM refuses with more than one API server).
"""

from __future__ import annotations

import logging

PLUGIN_NAME = "maft_lora_resolver"
RESOLVER_NAME = "maft adapter store"

log = logging.getLogger("vllm.maft_lora_resolver")


def register() -> None:
    """Entry point: register the store resolver with vLLM (once per process)."""
    from vllm.lora.resolver import LoRAResolverRegistry

    from services.inference.store_resolver.resolver import StoreResolver

    if RESOLVER_NAME in LoRAResolverRegistry.get_supported_resolvers():
        return
    LoRAResolverRegistry.register_resolver(RESOLVER_NAME, StoreResolver.from_settings())
