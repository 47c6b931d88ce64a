"""Majority vote over parsed answers with a task-specific equivalence.

Tie rule (deterministic): among answers with the same number of votes, the one first given
by the lowest agent index wins. Unparseable answers (None) never vote and never win.
Consensus is the fraction of *all* agents (unparseable ones included) that gave the winner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Equivalence = Callable[[str, str], bool]


@dataclass(frozen=True)
class Vote:
    """Outcome of a majority vote."""

    answer: str | None
    votes: int
    total: int
    tally: list[tuple[str, int]]

    @property
    def consensus(self) -> float:
        """Fraction of all agents whose answer equals the majority answer."""
        return self.votes / self.total if self.total else 0.0


def group_answers(answers: Sequence[str | None], equivalent: Equivalence) -> list[list[int]]:
    """Agent indices grouped into equivalence classes, ordered by first occurrence."""
    groups: list[list[int]] = []
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        for group in groups:
            if equivalent(answers[group[0]], answer):  # type: ignore[arg-type]
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def majority_vote(answers: Sequence[str | None], equivalent: Equivalence) -> Vote:
    """Majority answer of `answers` (one per agent, in agent order)."""
    groups = group_answers(answers, equivalent)
    tally = [(str(answers[g[0]]), len(g)) for g in groups]
    if not groups:
        return Vote(answer=None, votes=0, total=len(answers), tally=[])
    # max() keeps the first maximal element: groups are in first-occurrence order.
    best = max(groups, key=len)
    return Vote(answer=answers[best[0]], votes=len(best), total=len(answers), tally=tally)
