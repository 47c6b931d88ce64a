"""The inference server an experiment talks to: one already running, or our own launched with
the project's launcher (`python -m services.inference serve`) and stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from maft.adapter_store import normalized_model_path
from services.trainer.experiment.config import Runtime

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Endpoint:
    """How to reach the server and what it was started with."""

    url: str
    served_model_path: str  # the --model string (adapters must name it as their base)
    base_name: str  # --served-model-name: the model name of the un-finetuned agents
    dtype: str | None = None  # what our own server was started with (None: not ours)


def inference_dtype(name: str) -> str:
    """"auto": bfloat16 where the device multiplies it natively, else float32 (on an AVX2-only
    CPU bf16 is emulated and much slower)."""
    if name != "auto":
        return name
    from services.trainer.torch_runtime import native_bf16, resolve_device

    return "bfloat16" if native_bf16(resolve_device("auto")) else "float32"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(runtime: Runtime, port: int, seed: int) -> dict[str, str]:
    """The launcher's MAFT_* settings for our own server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAFT_")}
    env.update(
        MAFT_MODEL_PATH=str(runtime.model_path), MAFT_ADAPTER_STORE=str(runtime.store_dir),
        MAFT_BASE_MODEL_NAME=runtime.base_model_name, MAFT_HOST="127.0.0.1",
        MAFT_PORT=str(port), MAFT_MAX_LORA_RANK=str(runtime.max_lora_rank),
        MAFT_MAX_LORAS=str(runtime.max_loras), MAFT_MAX_MODEL_LEN=str(runtime.max_model_len),
        MAFT_DTYPE=inference_dtype(runtime.inference_dtype),
        MAFT_CPU_KVCACHE_GIB=str(runtime.cpu_kvcache_gib),
        MAFT_TENSOR_PARALLEL_SIZE=str(runtime.tensor_parallel_size),
        MAFT_GPU_MEMORY_UTILIZATION=str(runtime.gpu_memory_utilization),
        MAFT_EXTRA_ARGS=json.dumps(["--seed", str(seed)]), PYTHONUNBUFFERED="1")
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # use every core (see tests' fixture)
    return env


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"inference server exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise RuntimeError(f"inference server not healthy after {timeout} s; see {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def inference(runtime: Runtime, seed: int) -> Iterator[Endpoint]:
    """The running server named by --inference-url, or our own for the duration of the run."""
    if runtime.inference_url:
        served = runtime.served_model_path or normalized_model_path(runtime.model_path)
        yield Endpoint(runtime.inference_url.rstrip("/"), served, runtime.base_model_name)
        return
    port = _free_port()
    runtime.store_dir.mkdir(parents=True, exist_ok=True)
    log = runtime.out_dir / "inference.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.inference", "serve"],
                                cwd=REPO_ROOT, env=server_env(runtime, port, seed),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(proc, url, log, runtime.startup_timeout_s)
        yield Endpoint(url, normalized_model_path(runtime.model_path), runtime.base_model_name,
                       inference_dtype(runtime.inference_dtype))
    finally:
        _stop(proc)
