"""The dtype rule every service applies on CPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from maft.hardware import AVX512_CORE, cpu_dtype, cpu_flags, native_bf16_cpu

AVX2 = {"sse4_2", "avx", "avx2", "fma"}


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(("flags", "native"), [
    (AVX2, False), (AVX2 | {"avx512f"}, False), (AVX2 | AVX512_CORE, True),
    (AVX2 | {"amx_bf16"}, True), (set(), False)])
def test_native_bf16_needs_avx512_core_or_amx(flags: set[str], native: bool) -> None:
    assert native_bf16_cpu(flags) is native


def test_auto_dtype_is_float32_without_native_bf16() -> None:
    assert cpu_dtype("auto", AVX2) == "float32"
    assert cpu_dtype("auto", AVX512_CORE) == "bfloat16"
    assert cpu_dtype("bfloat16", AVX2) == "bfloat16"  # an explicit choice stands
    with pytest.raises(ValueError, match="not one of"):
        cpu_dtype("bf16")
