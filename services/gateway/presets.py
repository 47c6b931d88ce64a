"""Debate presets: what `model` means on the OpenAI-compatible endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway.settings import GatewaySettings


@dataclass(frozen=True)
class Preset:
    """A named debate shape."""

    id: str
    description: str
    agents: int
    rounds: int
    summarize: bool
    task: str


def presets(settings: GatewaySettings) -> dict[str, Preset]:
    """The presets served by this gateway, by id."""
    n, m, task = settings.default_agents, settings.default_rounds, settings.default_task
    items = [
        Preset("maft-debate", f"{n} agents, {m} rounds of debate, majority vote", n, m, False,
               task),
        Preset("maft-debate-summary", f"{n} agents, {m} rounds; critics see a summary", n, m,
               True, task),
        Preset("maft-majority", f"{n} independent answers, majority vote (no debate)", n, 1,
               False, task),
        Preset("maft-single", "one agent, one answer", 1, 1, False, task),
    ]
    return {p.id: p for p in items}


DEFAULT_PRESET = "maft-debate"
