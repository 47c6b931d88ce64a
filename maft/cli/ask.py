"""`maft ask`: post a question to the gateway and print the debate round by round."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from maft.cli.client import call
from maft.cli.settings import CliSettings
from maft.enums import Role

console = Console()


def _clip(text: str, full: bool) -> str:
    text = " ".join(text.split())
    return text if full or len(text) <= 240 else text[:237] + "..."


def render(debate: dict[str, Any], *, full: bool = False) -> None:
    """Print a debate: header, each round's responses and majority, the final vote."""
    console.print(f"[bold]Question:[/bold] {escape(debate['question'])}")
    console.print(f"debate {debate['id']} · task {debate['task']} · {debate['agents']} agents · "
                  f"{debate['rounds']} rounds · society v{debate['society_version']}")
    for rnd in debate["transcript"]:
        console.print(f"\n[bold]Round {rnd['round']}[/bold]")
        for r in rnd["responses"]:
            summary = r["role"] == Role.SUMMARIZER
            label = "summary for" if summary else "agent"
            answer = "" if summary else f" -> [cyan]{r['parsed_answer']}[/cyan]"
            console.print(f"  {label} {r['agent_index']} ({escape(r['lora_name'])}){answer}")
            console.print(f"    [dim]{escape(_clip(r['text'], full))}[/dim]")
        agents = sum(1 for r in rnd["responses"] if r["role"] != Role.SUMMARIZER)
        votes = round(rnd["consensus"] * agents)
        console.print(f"  majority: [bold]{rnd['majority_answer']}[/bold] ({votes}/{agents})")
    usage, seconds = debate["usage"], (debate["latency_ms"] or 0) / 1000
    console.print(f"\n[bold green]Final answer: {debate['final_answer']}[/bold green]  "
                  f"consensus {debate['consensus']:.0%} · {usage['total_tokens']} tokens · "
                  f"{seconds:.1f} s")


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    task: Annotated[str | None, typer.Option(help="numeric, arithmetic or gsm8k")] = None,
    agents: Annotated[int | None, typer.Option(min=1, max=8)] = None,
    rounds: Annotated[int | None, typer.Option(min=1, max=4)] = None,
    summarize: Annotated[bool, typer.Option(help="Critics see a summary.")] = False,
    temperature: Annotated[float | None, typer.Option(min=0.0, max=2.0)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    full: Annotated[bool, typer.Option(help="Print whole responses.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 900.0,
) -> None:
    """Ask the agents a question and print their debate round by round, with the vote."""
    body = {k: v for k, v in dict(question=question, task=task, agents=agents, rounds=rounds,
                                  temperature=temperature, max_tokens=max_tokens).items()
            if v is not None}
    if summarize:
        body["summarize"] = True
    debate = call(CliSettings(), "POST", "/v1/debates", json=body, timeout=timeout)
    if as_json:
        console.print_json(json.dumps(debate))
    else:
        render(debate, full=full)
