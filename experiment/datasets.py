"""Each method's finetuning data for one iteration, as chat examples per adapter slot.

Slots: "all" for a method whose one adapter plays every agent, else "gen<i>" / "crit<i>".
MAFT-style data comes from maft.curation.curate (the product's curation, unchanged); the
experiment decides which labels the debates carry (labels.py) and whose data goes into which
adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from experiment.config import ExperimentConfig
from experiment.labels import (
    Verdict,
    curation_config,
    label_summary,
    learning_debates,
    verdicts,
)
from experiment.methods import MethodSpec
from experiment.views import round_turns, vote_accuracy
from maft.curation import TRUNCATED, Curation, Example, curate
from maft.enums import Role
from maft.tasks import Message, Task

Slots = dict[str, list[dict[str, Any]]]
COMPOSITION = ("G", "C-", "C+", "truncated")  # example kinds, and targets cut at max_tokens


@dataclass
class Curated:
    """A method's datasets per slot, their stats, and each train debate's label verdict."""

    slots: Slots
    stats: dict[str, Any]
    verdicts: list[Verdict]


def _chat(example: Example) -> dict[str, Any]:
    return {"messages": [dict(m) for m in example.messages], "train_on": example.train_on}


def slot_of(role: str, n: int, spec: MethodSpec) -> str | None:
    """The adapter slot that learns from agent n's data of this role (None: no slot does)."""
    if role == Role.CRITIC and not (spec.train_critics and spec.learn_play == "debate"):
        return None
    return "all" if spec.shared else f"{'gen' if role == Role.GENERATOR else 'crit'}{n}"


def composition(stats: dict[str, Any], spec: MethodSpec, agents: int) -> dict[str, dict[str, int]]:
    """Each slot's examples by kind (G, C-, C+) and its targets dropped as truncated, from
    curation's per-agent stats (`Curation.stats`; runs before truncation counted have none)."""
    out: dict[str, dict[str, int]] = {}
    for role in (Role.GENERATOR, Role.CRITIC):
        for n in range(agents):
            slot, agent = slot_of(role, n, spec), stats.get(f"{role}-{n}")
            if slot is None or agent is None:
                continue
            into = out.setdefault(slot, dict.fromkeys(COMPOSITION, 0))
            for kind in COMPOSITION:
                into[kind] += agent.get(TRUNCATED, 0) if kind == TRUNCATED else \
                    agent["counts"].get(kind, 0)
    return out


def _slots(result: Curation, spec: MethodSpec) -> Slots:
    slots: Slots = {}
    for (role, n), data in result.datasets.items():
        if (slot := slot_of(role, n, spec)) is not None:
            slots.setdefault(slot, []).extend(_chat(e) for e in data.examples)
    return slots


def curation(records: Sequence[dict[str, Any]], spec: MethodSpec, config: ExperimentConfig,
             task: Task, key: str, society_version: int = 0, *,
             old_rules: bool = False) -> Curated:
    """Per-agent (MAFT), pooled (single-agent FT) or round-1 (Majority FT) datasets from the
    product's curation, under the run's rules (or the old ones: labels.py)."""
    debates = learning_debates(records, spec, config, task, key, society_version)
    rules = curation_config(config, spec, old_rules=old_rules)
    result = curate(debates, task=task, agents=config.agents, config=rules)
    slots, found = _slots(result, spec), verdicts(debates, result)
    labels = label_summary(records, found, task)
    stats = {"curation": result.stats, "sizes": {s: len(v) for s, v in slots.items()},
             "composition": composition(result.stats, spec, config.agents), "labels": labels,
             "label_accuracy": labels["accuracy"],
             "vote_accuracy": vote_accuracy(records, spec.learn_play, config.agents, task),
             "society_version": society_version}
    return Curated(slots, stats, found)


def curated(records: Sequence[dict[str, Any]], spec: MethodSpec, config: ExperimentConfig,
            task: Task, key: str, society_version: int = 0) -> tuple[Slots, dict[str, Any]]:
    """The datasets per slot and their stats under the run's rules (what the run trains on)."""
    found = curation(records, spec, config, task, key, society_version)
    return found.slots, found.stats


def star_wrong(records: Sequence[dict[str, Any]], task: Task) -> list[int]:
    """Positions of the questions the single agent got wrong (they get a hinted retry)."""
    return [i for i, r in enumerate(records)
            if not task.is_correct(round_turns(r, 1, 1)[0]["answer"], r["reference"])]


def _example(messages: list[Message], text: str) -> dict[str, Any]:
    return {"messages": [*messages, {"role": "assistant", "content": text}], "train_on": "final"}


def _target(turn: dict[str, Any], reference: str, task: Task) -> bool | None:
    """Whether a STaR answer is a target: right and complete; None: right but truncated."""
    if not task.is_correct(turn["answer"], reference):
        return False
    return None if turn.get("finish_reason") == "length" else True


def star(records: Sequence[dict[str, Any]], hinted: Sequence[dict[str, Any]],
         task: Task) -> tuple[Slots, dict[str, Any]]:
    """STaR: right answers as they are; for wrong ones, hinted rationales that reach the true
    answer, trained under the plain prompt (the hint is not in the example). Like every
    method, never a response cut at the token limit."""
    firsts = [(round_turns(r, 1, 1)[0], r) for r in records]
    retries = [(round_turns(h, 1, 1)[0], h) for h in hinted]
    found = [[(_target(t, r["reference"], task), t, r) for t, r in group]
             for group in (firsts, retries)]
    examples = [_example(task.generation_messages(r["question"]), t["text"])
                for group in found for ok, t, r in group if ok]
    rationalised = sum(bool(ok) for ok, _, _ in found[1])
    truncated = sum(ok is None for group in found for ok, _, _ in group)
    stats = {"sizes": {"all": len(examples)}, "right": len(examples) - rationalised,
             "rationalised": rationalised, "hinted": len(hinted), "label_accuracy": 1.0,
             "composition": {"all": {"G": len(examples), "C-": 0, "C+": 0,
                                     "truncated": truncated}}}
    return {"all": examples}, stats


class HintedTask(Task):
    """A task whose generation prompt carries the true answer as a hint (STaR rationalisation);
    parsing and equivalence are the wrapped task's."""

    name = "hinted"
    description = "STaR rationalisation prompts"

    def __init__(self, inner: Task, answers: dict[str, str]) -> None:
        self.inner, self.answers = inner, answers

    def generation_messages(self, question: str) -> list[Message]:
        """The hinted prompt."""
        return self.inner.hinted_generation_messages(question, self.answers[question])

    def parse(self, text: str) -> str | None:
        """The wrapped task's parser."""
        return self.inner.parse(text)

    def equivalent(self, a: str, b: str) -> bool:
        """The wrapped task's equivalence."""
        return self.inner.equivalent(a, b)

    def normalize_reference(self, raw: str) -> str:
        """The wrapped task's normalisation."""
        return self.inner.normalize_reference(raw)
