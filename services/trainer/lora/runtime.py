"""Where and how training runs: device, base-weight dtype, CPU thread count."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from maft.hardware import native_bf16_cpu

log = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(name: str) -> torch.device:
    """"auto": the GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware (not by emulation)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    # The rule inference applies too. Without it, bf16 GEMMs fall back to slow paths
    # (measured on an AVX2 EPYC: some layouts ran at 0.3 GFLOP/s against 20 in fp32).
    return native_bf16_cpu()


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The base weights' dtype; "auto" is bfloat16 only where bf16 is native."""
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    dtype = _DTYPES[name]
    if dtype == torch.bfloat16 and not native_bf16(device):
        log.warning("bfloat16 base weights on a %s without native bf16: training will be much "
                    "slower than with dtype='auto' or 'float32'", device.type)
    return dtype


def _cgroup_cpu_limit() -> int | None:
    """The CPU quota of this container (cgroup v2 cpu.max), rounded up; None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else max(1, -(-int(quota) // int(period)))


def _physical_cores(cpus: set[int]) -> int:
    """Distinct physical cores among `cpus` (SMT siblings share GEMM units: one thread each)."""
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology / "physical_package_id").read_text().strip() + ":"
                      + (topology / "core_id").read_text().strip())
        except OSError:
            return len(cpus)
    return len(cores)


def available_cpus() -> int:
    """Physical cores this process may use: affinity mask, then container quota."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(
        range(os.cpu_count() or 1))
    limit = _cgroup_cpu_limit()
    cores = _physical_cores(cpus)
    return min(cores, limit) if limit else cores


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (process-wide: the trainer owns its worker process).

    More threads than cores (a container quota torch does not see, or SMT siblings) makes every
    GEMM wait for descheduled threads.
    """
    count = threads or available_cpus()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
