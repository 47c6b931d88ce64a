"""`maft up`: the embedded default. Starts inference (vLLM), the gateway and the trainer on
SQLite, and keeps them running (maft.supervise)."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from maft import queue
from maft.cli.admin import create_key, upgrade_database
from maft.cli.settings import CliSettings
from maft.processes import (
    Child,
    http_ok,
    inference_argv,
    materialize_default_model,
    service_argv,
)
from maft.supervise import GaveUpError, Supervised, Supervisor

console = Console()


def ensure_model(settings: CliSettings, model_path: Path | None) -> Path:
    """The base model folder; materialises SmolLM2 when using the default location."""
    if model_path is not None:
        if not (model_path / "config.json").is_file():
            console.print(f"[red]{model_path} is not a Hugging Face model folder[/red]")
            raise typer.Exit(2)
        return model_path
    dest = settings.model_dir
    if not (dest / "config.json").is_file():
        console.print(f"materialising SmolLM2-135M-Instruct into {dest} (once, ~30 s)...")
    return materialize_default_model(dest)


def ensure_key(settings: CliSettings) -> str:
    """The embedded default's admin key, created once and kept in `home/api-key` (0600)."""
    existing = settings.resolved_key()
    if existing:
        return existing
    key = create_key(settings, "embedded-default", ["admin"])
    settings.key_file.parent.mkdir(parents=True, exist_ok=True)
    settings.key_file.touch(mode=0o600)
    settings.key_file.write_text(key + "\n")
    return key


def ensure_inference_key(settings: CliSettings) -> str:
    """The key vLLM requires: MAFT_INFERENCE_API_KEY, else `home/inference-key` (0600),
    created once. Every child gets it; nothing else on this machine can use vLLM."""
    if settings.inference_key:
        return settings.inference_key
    path = settings.home / "inference-key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def local_url(host: str, port: int) -> str:
    """How a process on this machine reaches a server listening on `host`."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True)
class Listen:
    """Where the gateway and vLLM listen: separately, so that exposing one exposes only it."""

    host: str
    port: int
    inference_host: str
    inference_port: int

    @property
    def gateway_url(self) -> str:
        """The gateway, from this machine."""
        return local_url(self.host, self.port)

    @property
    def inference_url(self) -> str:
        """vLLM, from this machine."""
        return local_url(self.inference_host, self.inference_port)


def children(settings: CliSettings, model: Path, listen: Listen, no_auth: bool,
             inference_key: str) -> list[Child]:
    """The processes of the embedded default."""
    logs = settings.home / "logs"
    common = {"MAFT_HOME": str(settings.home), "MAFT_BASE_MODEL_NAME": settings.base_model_name,
              "MAFT_ADAPTER_STORE": str(settings.adapter_dir), "MAFT_DATABASE_URL": settings.db_url,
              "MAFT_INFERENCE_URL": listen.inference_url,
              "MAFT_INFERENCE_API_KEY": inference_key,
              # The embedded default needs no Redis: Celery's filesystem transport under home.
              "MAFT_BROKER_URL": "filesystem://"}
    inference = Child("inference", inference_argv(),
                      {**os.environ, **common, "MAFT_MODEL_PATH": str(model),
                       "MAFT_HOST": listen.inference_host,
                       "MAFT_PORT": str(listen.inference_port)}, logs / "inference.log")
    gateway = Child("gateway", service_argv("uvicorn", "--factory",
                                            "services.gateway.main:app_factory", "--host",
                                            listen.host, "--port", str(listen.port)),
                    {**os.environ, **common, "MAFT_AUTH_DISABLED": str(no_auth).lower()},
                    logs / "gateway.log")
    trainer = Child("trainer", service_argv("celery", "-A", "services.trainer.worker", "worker",
                                            "--beat", "-Q", queue.TRAINING_QUEUE, "-c", "1",
                                            "--loglevel", "INFO", "-s",
                                            str(settings.home / "celerybeat-schedule")),
                    {**os.environ, **common, "MAFT_MODEL_PATH": str(model)},
                    logs / "trainer.log")
    return [inference, gateway, trainer]


def supervised(procs: list[Child], listen: Listen) -> list[Supervised]:
    """The children with their health checks and ports, for the supervisor."""
    inference, gateway, trainer = procs
    return [
        Supervised(inference, lambda: http_ok(f"{listen.inference_url}/health"),
                   (listen.inference_host, listen.inference_port)),
        Supervised(gateway, lambda: http_ok(f"{listen.gateway_url}/healthz"),
                   (listen.host, listen.port)),
        Supervised(trainer),  # no port; its beat is in its process group
    ]


def report_exit(child: Child) -> None:
    """Say which child died, then its log's last lines (printed as they are: no markup)."""
    console.print(f"[red]{child.name} exited; last lines of {child.log}:[/red]")
    console.print(child.tail(), markup=False, highlight=False)


def wait_ready(url: str, supervisor: Supervisor, timeout: float) -> None:
    """Poll /readyz until 200; exit with the dead child's log if one dies meanwhile (a child
    that cannot start is a configuration problem: restarting it would only hide it)."""
    deadline, last = time.time() + timeout, ""
    while time.time() < deadline:
        for child in supervisor.dead():
            report_exit(child)
            raise typer.Exit(1)
        try:
            response = httpx.get(f"{url}/readyz", timeout=120)
            if response.status_code == 200:
                return
            status = str(response.json().get("checks"))
        except (httpx.TransportError, ValueError):
            status = "gateway starting"
        if status != last:
            console.print(f"[dim]waiting: {status}[/dim]")
            last = status
        time.sleep(2)
    console.print(f"[red]not ready after {timeout:.0f} s; logs in "
                  f"{supervisor.items[0].child.log.parent}[/red]")
    raise typer.Exit(1)


def supervise(supervisor: Supervisor) -> None:
    """Restart crashed children until one crashes too often (then exit 1) or Ctrl-C."""
    try:
        while True:
            supervisor.tick()
            time.sleep(0.5)
    except GaveUpError as exc:
        console.print(f"{exc}; stopping everything", style="red", highlight=False, markup=False)
        raise typer.Exit(1) from None


def maft_command() -> str:
    """How to call this `maft` from another shell: `maft` if PATH finds this one, else its path.

    `make up` runs `.venv/bin/maft`, which PATH does not know unless the venv is active.
    """
    script = Path(sys.argv[0])
    found = shutil.which("maft")
    if script.name == "maft" and found and Path(found).resolve() == script.resolve():
        return "maft"
    if script.name == "maft" and script.exists():
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m maft.cli.main"


def banner(url: str, key: str | None) -> None:
    """Where the product is and how to call it."""
    auth = f" -H 'Authorization: Bearer {key}'" if key else ""
    console.print(f"\n[bold green]MAFT is ready at {url}[/bold green]  (API docs: {url}/docs)")
    console.print("Try:", style="bold")
    console.print(f"  {maft_command()} ask 'What is 12+7?'\n  curl -s {url}/v1/debates{auth} "
                  "-H 'Content-Type: application/json' -d '{\"question\": \"What is 12+7?\"}'",
                  soft_wrap=True, highlight=False, markup=False)
    if key:
        console.print(f"API key (admin; saved for `maft ask`): {key}", soft_wrap=True,
                      highlight=False)
    console.print("Ctrl-C stops everything.")


def say(line: str) -> None:
    """A supervision event, on one line, as it is (paths may hold brackets)."""
    console.print(line, highlight=False, markup=False, soft_wrap=True)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def up(
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8000,
    inference_port: Annotated[int, typer.Option(help="vLLM port.")] = 8001,
    host: Annotated[str, typer.Option(help="The gateway's interface.")] = "127.0.0.1",
    inference_host: Annotated[str, typer.Option(
        help="vLLM's interface (it needs the inference key, kept in home/inference-key).")]
    = "127.0.0.1",
    model_path: Annotated[Path | None, typer.Option(help="A local HF model folder.")] = None,
    no_auth: Annotated[bool, typer.Option(help="Serve without API keys (logs a warning).")]
    = False,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 900,
) -> None:
    """Start the whole product here: vLLM (CPU or GPU), gateway, trainer worker, SQLite;
    restart any of them that crashes."""
    settings = CliSettings()
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too
    upgrade_database(settings)
    model = ensure_model(settings, model_path)
    key = None if no_auth else ensure_key(settings)
    listen = Listen(host, port, inference_host, inference_port)
    procs = children(settings, model, listen, no_auth, ensure_inference_key(settings))
    supervisor = Supervisor(supervised(procs, listen), say)
    try:
        supervisor.start()
        console.print(f"starting inference, gateway and trainer; logs in {settings.home / 'logs'}")
        wait_ready(listen.gateway_url, supervisor, ready_timeout)
        banner(listen.gateway_url, key)
        supervise(supervisor)
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        supervisor.stop()
