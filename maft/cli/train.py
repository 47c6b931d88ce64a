"""`maft train ...` and `maft adapters ...`: self-improvement runs and societies, over the API."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from maft.cli.client import call
from maft.cli.settings import CliSettings
from maft.enums import ENDED_RUN

console = Console()
train_app = typer.Typer(help="Self-improvement runs (admin key).", no_args_is_help=True)
adapters_app = typer.Typer(help="Societies and adapter versions (admin key).",
                           no_args_is_help=True)


def _options(task: str | None, agents: int | None, w: float | None, epochs: int | None,
             rank: int | None, max_steps: int | None, eval_task: str | None,
             eval_size: int | None, extra: str | None) -> dict[str, Any]:
    options: dict[str, Any] = json.loads(extra) if extra else {}
    for key, value in (("task", task), ("agents", agents), ("w", w)):
        if value is not None:
            options[key] = value
    hyper = {k: v for k, v in (("epochs", epochs), ("rank", rank), ("max_steps", max_steps))
             if v is not None}
    evals = {k: v for k, v in (("task", eval_task), ("size", eval_size)) if v is not None}
    if hyper:
        options["hyperparameters"] = {**options.get("hyperparameters", {}), **hyper}
    if evals:
        options["eval"] = {**options.get("eval", {}), **evals}
    return options


def watch(settings: CliSettings, run_id: str, interval: float = 2.0) -> dict[str, Any]:
    """Progress bars, one per step, until the run ends."""
    bars: dict[str, TaskID] = {}
    columns = (TextColumn("{task.description:<22}"), BarColumn(), TextColumn("{task.fields[s]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        while True:
            run = call(settings, "GET", f"/v1/training-runs/{run_id}")
            for step in run["steps"]:
                if step["name"] not in bars:
                    bars[step["name"]] = progress.add_task(step["name"], total=1.0, s="")
                progress.update(bars[step["name"]], completed=step["progress"], s=step["status"])
            if run["status"] in ENDED_RUN:
                return run
            time.sleep(interval)


def summary(run: dict[str, Any]) -> None:
    """The outcome of a run in a few lines."""
    console.print(f"run {run['id']}: [bold]{run['status']}[/bold]"
                  f"{' (' + run['decision'] + ')' if run['decision'] else ''}")
    evaluation = run.get("evaluation") or {}
    for side in ("active", "candidate"):
        if side in evaluation:
            e = evaluation[side]
            console.print(f"  {side:<9} v{e['society_version']}: accuracy {e['accuracy']:.1%} "
                          f"({e['correct']}/{e['n']}) on {evaluation['source']}")
    if run.get("error"):
        console.print(f"  [yellow]{run['error']}[/yellow]")


@train_app.command("start")
def train_start(
    task: Annotated[str | None, typer.Option(help="Only debates of this task.")] = None,
    agents: Annotated[int | None, typer.Option(help="Size N of the new society.")] = None,
    w: Annotated[float | None, typer.Option(help="Share of corrected critic examples.")] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    rank: Annotated[int | None, typer.Option()] = None,
    max_steps: Annotated[int | None, typer.Option()] = None,
    eval_task: Annotated[str | None, typer.Option(help="arithmetic, gsm8k or holdout")] = None,
    eval_size: Annotated[int | None, typer.Option()] = None,
    options_json: Annotated[str | None, typer.Option("--options", help="Full JSON options.")]
    = None,
    wait: Annotated[bool, typer.Option(help="Show progress until the run ends.")] = True,
) -> None:
    """Start a run: curate -> train all agents -> evaluate -> publish."""
    settings = CliSettings()
    body = _options(task, agents, w, epochs, rank, max_steps, eval_task, eval_size, options_json)
    run = call(settings, "POST", "/v1/training-runs", json=body)
    console.print(f"queued run {run['id']}")
    if wait:
        summary(watch(settings, run["id"]))


@train_app.command("status")
def train_status(run_id: str, follow: Annotated[bool, typer.Option()] = False) -> None:
    """A run's steps, statistics and decision."""
    settings = CliSettings()
    run = watch(settings, run_id) if follow else call(settings, "GET",
                                                      f"/v1/training-runs/{run_id}")
    table = Table("step", "status", "progress", "eta s", "detail")
    for step in run["steps"]:
        eta = f"{step['eta_s']:.0f}" if step["eta_s"] is not None else ""
        table.add_row(step["name"], step["status"], f"{step['progress']:.0%}", eta,
                      json.dumps({k: v for k, v in step["detail"].items()
                                  if k in ("lora_name", "examples", "loss", "reason")}))
    console.print(table)
    summary(run)


@train_app.command("list")
def train_list(limit: int = 20) -> None:
    """Recent runs."""
    table = Table("id", "status", "trigger", "created", "decision", "candidate")
    for run in call(CliSettings(), "GET", "/v1/training-runs", params={"limit": limit})["data"]:
        table.add_row(run["id"], run["status"], run["trigger"], run["created_at"][:19],
                      run["decision"] or "", str(run["candidate_society_version"] or ""))
    console.print(table)


@adapters_app.command("list")
def adapters_list() -> None:
    """Societies, their adapters, and which one is active."""
    data = call(CliSettings(), "GET", "/v1/adapters")
    table = Table("society", "status", "active", "agents", "adapters")
    for s in data["societies"]:
        names = ", ".join(a["lora_name"] for a in s["adapters"]) or f"base: {s['base_model_name']}"
        table.add_row(f"v{s['version']}", s["status"], "*" if s["active"] else "",
                      str(s["agents"]), names)
    console.print(table)


@adapters_app.command("activate")
def adapters_activate(
        version: int,
        force: Annotated[bool, typer.Option(
            help="Activate even a society its evaluation gate rejected.")] = False) -> None:
    """Make a society serve debates (rollback = activate an earlier version)."""
    data = call(CliSettings(), "POST", f"/v1/societies/{version}/activate",
                params={"force": "true"} if force else None)
    if force:
        console.print(f"[yellow]forced: v{version} serves debates whatever its evaluation "
                      "said[/yellow]")
    console.print(f"active society: v{data['active_version']}")
