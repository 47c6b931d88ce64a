"""Helpers of bench/load.py: the product under load, started by the benchmark itself.

`Stack` runs vLLM and the gateway as `maft up` does (same commands and MAFT_* settings) on a
database of choice (a SQLite file, or a fresh schema of a PostgreSQL database), with no trainer
(training would compete for the CPU), and can SIGKILL inference by its PID and start it again.
"""

from __future__ import annotations

import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import text

from maft.db import crud, migrate
from maft.db.session import make_engine, make_session_factory
from maft.processes import Child, clean_env, free_port, http_ok, inference_argv, service_argv
from maft.settings import DEFAULT_BASE_MODEL_NAME

BENCH_SCHEMA = "maft_load_bench"


def prepare_database(kind: str, home: Path, pg_url: str) -> str:
    """A migrated, empty database (SQLite under `home`, or a fresh Postgres schema); its URL."""
    if kind == "sqlite":
        url = f"sqlite:///{home / 'maft.db'}"
    else:
        engine = make_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {BENCH_SCHEMA} CASCADE; "
                              f"CREATE SCHEMA {BENCH_SCHEMA}"))
        engine.dispose()
        url = f"{pg_url}?options=-csearch_path%3D{BENCH_SCHEMA}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as db, db.begin():
        crud.ensure_base_society(db, base_model_name=DEFAULT_BASE_MODEL_NAME)
    engine.dispose()
    return url


@dataclass
class Stack:
    """vLLM + gateway processes under a temp MAFT_HOME."""

    home: Path
    db_url: str
    inference: Child
    gateway: Child
    gateway_url: str
    inference_url: str

    @classmethod
    def start(cls, model: Path, kind: str, pg_url: str, gateway_env: dict[str, str],
              timeout: float = 900) -> Stack:
        """Launch both services and wait until the gateway is ready."""
        home = Path(tempfile.mkdtemp(prefix=f"maft-load-{kind}-"))
        db_url = prepare_database(kind, home, pg_url)
        port, inference_port = free_port(), free_port()
        common = dict(home=home, database_url=db_url, base_model_name=DEFAULT_BASE_MODEL_NAME,
                      adapter_store=home / "adapters",
                      inference_url=f"http://127.0.0.1:{inference_port}")
        inference = Child("inference", inference_argv(), clean_env(
            **common, model_path=model, host="127.0.0.1", port=inference_port),
            home / "inference.log")
        gateway = Child("gateway", service_argv(
            "uvicorn", "--factory", "services.gateway.main:app_factory", "--host", "127.0.0.1",
            "--port", str(port)), clean_env(**common, auth_disabled="true") | gateway_env,
            home / "gateway.log")
        stack = cls(home, db_url, inference.start(), gateway.start(),
                    f"http://127.0.0.1:{port}", common["inference_url"])  # type: ignore[arg-type]
        stack.wait_ready(timeout)
        return stack

    def wait_ready(self, timeout: float) -> float:
        """Seconds until /readyz answers 200 (the gateway, vLLM and the society)."""
        return self.inference.wait_until(
            lambda: http_ok(f"{self.gateway_url}/readyz", timeout=60), timeout, poll=1)

    def kill_inference(self) -> int:
        """SIGKILL inference by its PID (as a crash would), then whatever it left in its
        process group (engine workers), so its port and memory come free; the PID."""
        pid = self.inference.pid
        os.kill(pid, signal.SIGKILL)
        self.inference.kill()
        return pid

    def restart_inference(self) -> None:
        """Start inference again with the same command (what a supervisor does)."""
        self.inference = Child(self.inference.name, self.inference.argv, self.inference.env,
                               self.inference.log).start()

    def running_requests(self) -> float:
        """vLLM's vllm:num_requests_running (0 when inference is down)."""
        try:
            text_ = httpx.get(f"{self.inference_url}/metrics", timeout=10).text
        except httpx.TransportError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text_.splitlines()
                   if line.startswith("vllm:num_requests_running"))

    def stop(self) -> None:
        """Stop both services."""
        self.gateway.stop(grace=30)
        self.inference.stop(grace=30)
