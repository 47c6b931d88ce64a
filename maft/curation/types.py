"""The data types of curation: its config, examples, per-agent datasets and results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from maft.enums import ExampleKind, LabelSource

LossOn = Literal["all_assistant", "final"]
Majority = Literal["strict", "plurality"]
DROP_REASONS = ("other_task", "duplicate", "no_label", "no_majority", "low_consensus")
TRUNCATED = "truncated"


class Outcome(StrEnum):
    """What became of one agent's response in a usable debate (besides becoming an example of
    kind G, C- or C+)."""

    WRONG = "wrong"  # its (last) answer is not the label
    TRUNCATED = TRUNCATED  # a turn that would carry loss hit the token limit
    INCONSISTENT = "inconsistent"  # the conversation sent to it was not its own
    NOT_MIXED = "not_mixed"  # a C+ candidate the w-mix left out
    ABSENT = "absent"  # the agent has no such turn in this debate


@dataclass(frozen=True)
class CurationConfig:
    """How datasets are built (see the module docstring)."""

    w: float = 2 / 3  # share of D_C- in each critic's mix (0..1)
    use_ground_truth: bool = True  # feedback (then reference) replaces the vote as label
    min_consensus: float = 0.0  # vote-labelled debates below this are dropped
    critic_loss: LossOn = "all_assistant"
    majority: Majority = "strict"  # a vote labels only when more than half the agents agree
    dedupe: bool = True  # one debate per question (the newest)
    seed: int = 0
    drop_truncated: bool = True  # False only to compare with the rules before truncation counted

    def __post_init__(self) -> None:
        if not (0.0 <= self.w <= 1.0 and 0.0 <= self.min_consensus <= 1.0):
            raise ValueError("w and min_consensus must be between 0 and 1")
        if self.critic_loss not in ("all_assistant", "final"):
            raise ValueError("critic_loss must be 'all_assistant' or 'final'")
        if self.majority not in ("strict", "plurality"):
            raise ValueError("majority must be 'strict' or 'plurality'")


@dataclass(frozen=True)
class Example:
    """One chat example ending with an assistant turn of the agent being trained."""

    messages: tuple[dict[str, str], ...]
    train_on: LossOn  # which assistant turns carry the loss
    debate_id: str
    label: str
    label_source: LabelSource
    kind: ExampleKind


@dataclass
class AgentDataset:
    """The finetuning data of one agent (role, index)."""

    role: str
    agent_index: int
    examples: list[Example] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # availability before mixing, reason
    outcomes: dict[str, str] = field(default_factory=dict)  # debate id -> Outcome (a value)

    def stats(self) -> dict[str, Any]:
        """Size, counts and shares of G / C- / C+, label sources, distinct debates (+ info)."""
        size = len(self.examples)
        kinds = Counter(e.kind for e in self.examples)
        counts = {str(k): kinds[k] for k in ExampleKind}
        sources = Counter(e.label_source for e in self.examples)
        return {"size": size, "counts": counts,
                "shares": {k: n / size if size else 0.0 for k, n in counts.items()},
                "label_sources": {str(s): sources[s] for s in LabelSource},
                "debates": len({e.debate_id for e in self.examples}), **self.info}


@dataclass
class Curation:
    """Every agent's dataset, keyed (role, agent_index), JSON-friendly stats, and why each
    dropped debate was dropped (debate id -> a DROP_REASONS entry)."""

    datasets: dict[tuple[str, int], AgentDataset]
    stats: dict[str, Any]
    dropped: dict[str, str] = field(default_factory=dict)
    labels: dict[str, tuple[str, LabelSource]] = field(default_factory=dict)  # usable debates

    def outcome_rows(self) -> list[dict[str, Any]]:
        """One row per dropped debate and per agent response of a usable debate: what
        curation made of it (for the record a product keeps of each training run)."""
        rows: list[dict[str, Any]] = [
            {"debate_id": d, "role": None, "agent_index": None, "outcome": reason, "label": None,
             "label_source": None} for d, reason in self.dropped.items()]
        for (role, n), data in self.datasets.items():
            for debate_id, outcome in data.outcomes.items():
                label, source = self.labels[debate_id]
                rows.append({"debate_id": debate_id, "role": str(role), "agent_index": n,
                             "outcome": str(outcome), "label": label,
                             "label_source": str(source)})
        return rows
