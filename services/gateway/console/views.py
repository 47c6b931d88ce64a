"""What the console shows, computed from ORM rows: the round x agent grid with its votes, what
each training run made of each response, label accuracy, and each society's lineage."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from maft.db.models import CurationOutcome, Debate, Society, TrainingRun
from maft.enums import DebateStatus, Role
from maft.voting import majority_vote
from services.gateway import views
from services.gateway.schemas import ResponseOut, RoundOut

OUTCOMES = {
    "G": "generator example", "C-": "critic example: corrected (C-)",
    "C+": "critic example: kept correct (C+)", "wrong": "dropped: answer differs from the label",
    "truncated": "dropped: stopped at the token limit",
    "inconsistent": "dropped: the conversation sent was not its own",
    "not_mixed": "dropped: a C+ the w-mix left out", "absent": "dropped: no such turn",
    "other_task": "debate dropped: another task", "duplicate": "debate dropped: a newer "
    "debate asked the same question", "no_label": "debate dropped: no label",
    "no_majority": "debate dropped: no strict majority", "low_consensus":
    "debate dropped: consensus below the run's minimum"}
DIVERSITY = (("consensus", "Consensus"), ("embedding_dissimilarity", "Embedding dissimilarity"),
             ("cross_nll", "Cross-agent NLL"))


@dataclass
class RoundView:
    """One round of the grid: agents in index order, summaries apart, and the round's vote."""

    number: int
    agents: list[ResponseOut]
    summaries: list[ResponseOut]
    majority: str | None
    consensus: float
    tally: list[tuple[str, int]]
    unparsed: int
    outcomes: dict[int, list[CurationOutcome]] = field(default_factory=dict)


def _round(debate: Debate, wire: RoundOut) -> RoundView:
    agents = sorted((r for r in wire.responses if r.role != Role.SUMMARIZER),
                    key=lambda r: r.agent_index)
    vote = majority_vote([r.parsed_answer for r in agents], views.task_of(debate.task).equivalent)
    return RoundView(wire.round, agents, [r for r in wire.responses if r.role == Role.SUMMARIZER],
                     vote.answer, vote.consensus, vote.tally,
                     sum(r.parsed_answer is None for r in agents))


def rounds(debate: Debate, *, complete_only: bool = False) -> list[RoundView]:
    """The debate's rounds; with `complete_only`, those every agent has answered."""
    out = [_round(debate, wire) for wire in views.rounds(debate)]
    return [r for r in out if len(r.agents) == debate.agents] if complete_only else out


def attach_outcomes(grid: list[RoundView], outcomes: list[CurationOutcome]) -> None:
    """Put each response outcome on the cell it is about: generators' on round 1, critics'
    on the last round (the critic's whole conversation ends there)."""
    if not grid:
        return
    for row in outcomes:
        if row.role is None or row.agent_index is None:
            continue
        target = grid[0] if row.role == Role.GENERATOR else grid[-1]
        target.outcomes.setdefault(row.agent_index, []).append(row)


def dropped(outcomes: list[CurationOutcome]) -> list[CurationOutcome]:
    """The runs that dropped the whole debate (with their reason)."""
    return [o for o in outcomes if o.role is None]


def running(debate: Debate) -> bool:
    """Whether the debate is still being debated."""
    return debate.status == DebateStatus.RUNNING


def truth(debate: Debate) -> str | None:
    """A debate's ground truth: its latest feedback, else its reference answer."""
    return debate.feedback[-1].correct_answer if debate.feedback else debate.reference_answer


def label_accuracy(rows: list[tuple[Debate, str | None, str | None]]) -> dict[str, Any]:
    """How many of a run's labels agree with the ground truth known now, among the debates
    that have one; per label source too (vote labels are the ones that can be wrong)."""
    seen: dict[uuid.UUID, tuple[bool, str]] = {}
    for debate, label, source in rows:
        known = truth(debate)
        if known is not None and label is not None:
            right = views.task_of(debate.task).equivalent(label, known)
            seen[debate.id] = (right, source or "?")
    by_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for right, source in seen.values():
        by_source[source][0] += right
        by_source[source][1] += 1
    correct = sum(right for right, _ in seen.values())
    return {"labelled": len({d.id for d, _, _ in rows}), "checked": len(seen),
            "accuracy": correct / len(seen) if seen else None,
            "by_source": {s: {"correct": c, "n": n} for s, (c, n) in sorted(by_source.items())}}


@dataclass
class SocietyView:
    """A society with its lineage, scores, gate decision, diversity and training data."""

    society: Society
    active: bool
    run: TrainingRun | None
    accuracy: dict[str, Any] | None
    diversity: dict[str, Any]
    labels: dict[str, Any] | None

    @property
    def regression(self) -> bool:
        """Whether its gate scored it below the society it was measured against."""
        scores = self.run.evaluation if self.run else {}
        try:
            return bool(scores["candidate"]["accuracy"] < scores["active"]["accuracy"])
        except (KeyError, TypeError):
            return False


def accuracy_of(society: Society, runs: list[TrainingRun]) -> dict[str, Any] | None:
    """The society's own gate score, else (v0, or a society evaluated only as the incumbent)
    the newest score it got as the active side of a later run's gate."""
    own = society.metrics.get("eval")
    if own and own.get("accuracy") is not None:
        return dict(own)
    for run in runs:  # newest first
        active = run.evaluation.get("active") if run.evaluation else None
        if run.base_society_version == society.version and active and \
                active.get("accuracy") is not None:
            return {**active, "source": f"as incumbent in run {str(run.id)[:8]}"}
    return None


def society_view(society: Society, *, active: int, runs: list[TrainingRun],
                 labels: dict[str, Any] | None) -> SocietyView:
    """One row of the societies page."""
    run = next((r for r in runs if r.id == society.training_run_id), None)
    return SocietyView(society, society.version == active, run, accuracy_of(society, runs),
                       dict(society.metrics.get("diversity") or {}), labels)
