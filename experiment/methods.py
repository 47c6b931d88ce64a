"""The compared methods: how each answers a question and what (if anything) it learns.

play: "single" (one agent, one answer), "majority" (N independent answers, vote), "debate"
(N agents, M rounds). learn: None (never trained), "majority" (all agents' answers that agree
with the plain vote of N independent answers), "star" (answers right by the ground truth, plus
rationalisations given the true answer as a hint), "pooled" (every debate answer matching the
debate's vote, in one dataset), "per_agent" (MAFT: each agent only its own data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Play = Literal["single", "majority", "debate"]
Learn = Literal["majority", "star", "pooled", "per_agent"]
LEARN_PLAY: dict[Learn, Play] = {"majority": "majority", "star": "single", "pooled": "debate",
                                 "per_agent": "debate"}


@dataclass(frozen=True)
class MethodSpec:
    """One compared method."""

    key: str
    label: str
    play: Play
    learn: Learn | None = None
    shared: bool = False  # one adapter plays every agent
    train_critics: bool = True  # per_agent only: False keeps the critics at the base model
    summarize: bool | None = None  # None: the experiment's setting
    from_base: bool = False  # each iteration trains afresh from the base model (STaR)

    @property
    def trains(self) -> bool:
        """Whether the method has adapters that change across iterations."""
        return self.learn is not None

    @property
    def learn_play(self) -> Play:
        """The play whose train-split debates the method learns from ("debate" if untrained)."""
        return LEARN_PLAY[self.learn] if self.learn else "debate"

    def summarizes(self, default: bool) -> bool:
        """Whether this method's debates use the summarizer."""
        return default if self.summarize is None else self.summarize


_SPECS = (
    MethodSpec("base", "Base", "single"),
    MethodSpec("majority", "Majority", "majority"),
    MethodSpec("debate", "Debate", "debate"),
    MethodSpec("majority_ft", "Majority FT", "majority", "majority", shared=True),
    MethodSpec("star", "STaR", "single", "star", shared=True, from_base=True),
    MethodSpec("single_ft", "Single-agent FT", "debate", "pooled", shared=True),
    MethodSpec("maft", "MAFT", "debate", "per_agent"),
    MethodSpec("maft_wo_critic", "MAFT w/o critic", "debate", "per_agent", train_critics=False),
    MethodSpec("maft_wo_summary", "MAFT w/o summary", "debate", "per_agent", summarize=False),
)
SPECS: dict[str, MethodSpec] = {s.key: s for s in _SPECS}
ALL_METHODS: tuple[str, ...] = tuple(SPECS)
