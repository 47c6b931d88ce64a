"""Each method's finetuning data for one iteration, as chat examples per adapter slot.

Slots: "all" for a method whose one adapter plays every agent, else "gen<i>" / "crit<i>".
MAFT-style data comes from maft.curation.curate (the product's curation, unchanged); the
experiment only decides whose data goes into which adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiment.config import ExperimentConfig
from experiment.methods import MethodSpec, Play
from experiment.views import debate_records, label_accuracy, round_turns
from maft.curation import CurationConfig, Example, curate
from maft.enums import Role
from maft.tasks import Message, Task

Slots = dict[str, list[dict[str, Any]]]


def _chat(example: Example) -> dict[str, Any]:
    return {"messages": [dict(m) for m in example.messages], "train_on": example.train_on}


def curated(records: Sequence[dict[str, Any]], spec: MethodSpec, config: ExperimentConfig,
            task: Task, key: str) -> tuple[Slots, dict[str, Any]]:
    """Per-agent (MAFT), pooled (single-agent FT) or round-1 (Majority FT) datasets."""
    play: Play = "majority" if spec.learn == "majority" else "debate"
    debates = debate_records(records, play=play, agents=config.agents, task=task, key=key)
    result = curate(debates, task=task, agents=config.agents, config=CurationConfig(
        w=config.w, use_ground_truth=False, min_consensus=config.min_consensus,
        seed=config.seed))
    slots: Slots = {}
    for (role, n), data in result.datasets.items():
        if role == Role.CRITIC and not (spec.train_critics and play == "debate"):
            continue
        slot = "all" if spec.shared else f"{'gen' if role == Role.GENERATOR else 'crit'}{n}"
        slots.setdefault(slot, []).extend(_chat(e) for e in data.examples)
    stats = {"curation": result.stats, "sizes": {s: len(v) for s, v in slots.items()},
             "label_accuracy": label_accuracy(records, play, config.agents, task)}
    return slots, stats


def star_wrong(records: Sequence[dict[str, Any]], task: Task) -> list[int]:
    """Positions of the questions the single agent got wrong (they get a hinted retry)."""
    return [i for i, r in enumerate(records)
            if not task.is_correct(round_turns(r, 1, 1)[0]["answer"], r["reference"])]


def _example(messages: list[Message], text: str) -> dict[str, Any]:
    return {"messages": [*messages, {"role": "assistant", "content": text}], "train_on": "final"}


def star(records: Sequence[dict[str, Any]], hinted: Sequence[dict[str, Any]],
         task: Task) -> tuple[Slots, dict[str, Any]]:
    """STaR: right answers as they are; for wrong ones, hinted rationales that reach the true
    answer, trained under the plain prompt (the hint is not in the example)."""
    examples = []
    for r in records:
        first = round_turns(r, 1, 1)[0]
        if task.is_correct(first["answer"], r["reference"]):
            examples.append(_example(task.generation_messages(r["question"]), first["text"]))
    rationalised = 0
    for h in hinted:
        turn = round_turns(h, 1, 1)[0]
        if task.is_correct(turn["answer"], h["reference"]):
            examples.append(_example(task.generation_messages(h["question"]), turn["text"]))
            rationalised += 1
    stats = {"sizes": {"all": len(examples)}, "right": len(examples) - rationalised,
             "rationalised": rationalised, "hinted": len(hinted), "label_accuracy": 1.0}
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
