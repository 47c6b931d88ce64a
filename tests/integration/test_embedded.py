"""The README's first command: `maft up` on the real SmolLM2, then `maft ask`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from maft.processes import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.smollm2]
MAFT = [sys.executable, "-m", "maft.cli.main"]


def wait_for(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Wait until `needle` appears in the log of a running process."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"maft up exited {proc.returncode}:\n{text[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"no {needle!r} after {timeout} s:\n{log.read_text()[-3000:]}")


def test_maft_up_then_ask(smollm2_dir: Path, tmp_path: Path) -> None:
    port, inference_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAFT_")}
    env.update(MAFT_HOME=str(tmp_path / "home"), MAFT_GATEWAY_URL=f"http://127.0.0.1:{port}",
               MAFT_CPU_KVCACHE_GIB="1", MAFT_MAX_MODEL_LEN="2048")
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen([*MAFT, "up", "--port", str(port), "--inference-port",
                               str(inference_port), "--model-path", str(smollm2_dir)],
                              env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        banner = wait_for(log, "MAFT is ready", up, timeout=600)
        assert f"http://127.0.0.1:{port}/docs" in banner
        assert f"{sys.executable} -m maft.cli.main ask 'What is 12+7?'" in banner  # runnable
        asked = subprocess.run(
            [*MAFT, "ask", "What is 2+3?", "--temperature", "0", "--max-tokens", "96"],
            env=env, capture_output=True, text=True, timeout=600)
        assert asked.returncode == 0, asked.stdout + asked.stderr
        for needle in ("Round 1", "Round 2", "agent 0 (SmolLM2-135M-Instruct)", "majority:",
                       "Final answer:"):
            assert needle in asked.stdout, asked.stdout
        unauthenticated = httpx.get(f"http://127.0.0.1:{port}/v1/debates")
        assert unauthenticated.status_code == 401  # the embedded default keeps auth on
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
    for p in (port, inference_port):  # both children are gone
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{p}/healthz", timeout=2)
