"""The CLI's HTTP calls to the gateway, with readable failures."""

from __future__ import annotations

from typing import Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from maft.cli.settings import CliSettings

console = Console()


def call(settings: CliSettings, method: str, path: str, *, json: Any = None,
         params: dict[str, Any] | None = None, timeout: float = 60.0) -> Any:
    """One API call; exits with the gateway's error message (or why it is unreachable)."""
    key = settings.resolved_key()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, f"{settings.gateway_url}{path}", json=json,
                                 params=params, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        console.print(f"[red]the gateway at {settings.gateway_url} did not answer within "
                      f"{timeout:.0f} s; it may be waiting on inference: "
                      f"{settings.gateway_url}/readyz says what it waits on[/red]")
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        console.print(f"[red]gateway at {settings.gateway_url} is not reachable "
                      f"({escape(repr(exc))}); start it with `maft up`[/red]")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}: {escape(error_message(response))}[/red]")
        if response.status_code == 503:
            console.print(f"the gateway is up; {settings.gateway_url}/readyz says what it "
                          "waits on", markup=False)
        raise typer.Exit(1)
    return response.json()


def error_message(response: httpx.Response) -> str:
    """The gateway's error message (its JSON body), or the raw body."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text
