"""`maft experiment run ... | report <dir>`: forwards to `python -m experiment`
in a subprocess (the `maft` package never imports `services`)."""

from __future__ import annotations

import subprocess
import sys

import typer

experiment_app = typer.Typer(
    help="Reproduce the paper's comparison (baselines, MAFT, ablations) over finetuning "
         "iterations: tables, plots, JSON. Needs the trainer, inference and experiment extras.",
    no_args_is_help=True)
_PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def forward(args: list[str]) -> int:
    """Run the experiment module with `args`; its exit code."""
    return subprocess.call([sys.executable, "-m", "experiment", *args])


@experiment_app.command(context_settings=_PASS, add_help_option=False)
def run(ctx: typer.Context) -> None:
    """Run or resume an experiment (all options: `maft experiment run --help`)."""
    raise typer.Exit(forward(["run", *ctx.args]))


@experiment_app.command(context_settings=_PASS, add_help_option=False)
def report(ctx: typer.Context) -> None:
    """Rebuild results.md, results.json and the plots of an output folder."""
    raise typer.Exit(forward(["report", *ctx.args]))
