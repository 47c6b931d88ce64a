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
    except httpx.TransportError as exc:
        console.print(f"[red]gateway at {settings.gateway_url} is not reachable ({exc}); "
                      "start it with `maft up`[/red]")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        console.print(f"[red]{response.status_code}: {escape(str(message))}[/red]")
        raise typer.Exit(1)
    return response.json()
