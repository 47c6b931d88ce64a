"""Stored debates as plain records: what curation, the evaluation and the harness read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TurnRecord:
    """One stored agent response: exactly what was sent and what came back."""

    round: int
    agent_index: int
    role: str
    lora_name: str
    messages: tuple[dict[str, str], ...]
    text: str
    answer: str | None  # parsed answer (None = unparseable)
    finish_reason: str | None = None  # "length": cut at max_tokens

    @property
    def truncated(self) -> bool:
        """Whether the response stopped at the token limit (its answer may be cut off)."""
        return self.finish_reason == "length"


@dataclass(frozen=True)
class DebateRecord:
    """One stored, completed debate with its ground-truth labels."""

    id: str
    question: str
    task: str
    created_at: datetime
    society_version: int
    agents: int
    rounds: int
    final_answer: str | None
    consensus: float | None
    reference_answer: str | None  # given with the request (ground truth)
    feedback_answer: str | None  # latest feedback label (ground truth)
    turns: tuple[TurnRecord, ...]

    def turn(self, round_no: int, role: str, agent_index: int) -> TurnRecord | None:
        """The turn of `role` agent `agent_index` in round `round_no`, or None."""
        wanted = (round_no, role, agent_index)
        return next((t for t in self.turns if (t.round, t.role, t.agent_index) == wanted), None)
