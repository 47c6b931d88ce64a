"""Which label each train debate gives a method, under the run's rules or the old ones.

- labels="vote": every debate is labelled by its own vote (the paper: unsupervised).
- labels="reference": every debate carries its question's reference answer, which labels it.
- labels="feedback": a seeded share `feedback_share` of the train questions (the same ones every
  iteration: the traffic a product team labels) carries the reference as feedback; the others
  are labelled by their vote.
Majority FT keeps its own definition whatever `labels` says: the plain round-1 vote, under the
run's majority rule. STaR (ground truth by design) does not curate.

The old rules (before strict majorities and truncation) are the run's rules with
majority="plurality" and drop_truncated=False: the before/after comparison on the same debates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from experiment.config import ExperimentConfig
from experiment.methods import MethodSpec
from experiment.views import debate_records
from maft.curation import Curation, CurationConfig
from maft.records import DebateRecord
from maft.tasks import Task

Verdict = dict[str, str]  # {"label": ..., "source": ...} or {"drop": reason}


def feedback_questions(n: int, share: float, seed: int) -> frozenset[int]:
    """The train question indices (of `n`) whose debates carry feedback: round(share * n) of
    them, a draw seeded by the experiment seed."""
    k = min(n, math.floor(share * n + 0.5))
    return frozenset(random.Random(f"{seed}:feedback").sample(range(n), k))


def label_mode(config: ExperimentConfig, spec: MethodSpec) -> str:
    """Where a method's labels come from (Majority FT: always its vote)."""
    return "vote" if spec.learn == "majority" else config.labels


def curation_config(config: ExperimentConfig, spec: MethodSpec, *,
                    old_rules: bool = False) -> CurationConfig:
    """The curation settings of a method: the run's rules, or the old ones."""
    rules = config.curation(supervised=label_mode(config, spec) != "vote")
    return replace(rules, majority="plurality", drop_truncated=False) if old_rules else rules


def learning_debates(records: Sequence[dict[str, Any]], spec: MethodSpec,
                     config: ExperimentConfig, task: Task, key: str,
                     society_version: int = 0) -> list[DebateRecord]:
    """The curation input of a method: its play's view of each train debate, carrying the
    reference answer where the method's labels say so."""
    mode = label_mode(config, spec)
    feedback = (feedback_questions(config.train_size, config.feedback_share, config.seed)
                if mode == "feedback" else frozenset())
    return debate_records(records, play=spec.learn_play, agents=config.agents, task=task,
                          key=key, society_version=society_version,
                          reference=mode == "reference", feedback=feedback)


def _verdict(debate_id: str, result: Curation) -> Verdict:
    if debate_id in result.labels:
        label, source = result.labels[debate_id]
        return {"label": label, "source": str(source)}
    return {"drop": result.dropped[debate_id]}


def verdicts(debates: Sequence[DebateRecord], result: Curation) -> list[Verdict]:
    """Each debate's label and its source, or why the curation `result` dropped it (in the
    debates' order)."""
    return [_verdict(d.id, result) for d in debates]


def label_summary(records: Sequence[dict[str, Any]], found: Sequence[Verdict],
                  task: Task) -> dict[str, Any]:
    """How many debates got a label and how many of those labels are the reference answer."""
    labelled = [(r, v) for r, v in zip(records, found, strict=True) if "label" in v]
    right = sum(task.is_correct(v["label"], r["reference"]) for r, v in labelled)
    return {"debates": len(records), "labelled": len(labelled), "right": right,
            "accuracy": right / len(labelled) if labelled else None}
