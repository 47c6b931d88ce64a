"""Each agent's finetuning data from stored debates (method.md, "Finetuning data, per agent").

Pure and deterministic: the same debates, task and config (seed included) give the same
datasets, in the same order, whatever the order of the input debates. Choices, in order:
- Debates of another task are dropped ("other_task"). One debate per question is kept (questions
  whitespace-normalised, case-folded): the newest by (created_at, id) ("duplicate"), before
  labelling, so the newest debate stands for its question even if it proves unusable.
- Label y_hat (`label_of`): if use_ground_truth, the latest feedback, else the reference answer
  (normalised by the task where they parse), else the majority vote (`final_answer`). No label:
  dropped ("no_label"). A vote labels only with a strict majority (majority="strict", the
  default): more than half of the debate's agents gave it (consensus > 1/2; an unparseable
  answer counts against it), else "no_majority" (a 3-way split would otherwise make the tie
  rule, agent 0's answer, everyone's label). majority="plurality" keeps the answering rule.
  min_consensus drops vote-labelled debates only ("low_consensus"); missing consensus is 0.
- A response cut at the token limit (finish_reason "length") is never a target: not as a
  generator example, not as a critic's last turn, nor as an earlier turn that carries loss
  (critic_loss="all_assistant"); counted per agent as "truncated".
- Generator n (D_G): agent n's own round-1 generator turn if its answer is equivalent to y_hat
  (`task.is_correct`: unparseable is never right); single-turn example, train_on="final".
- Critic n: debates with rounds >= 2 whose agent-n critic turn of the last round (`rounds`) is
  right; C- if agent n's round-1 answer was wrong or unparseable, else C+. Example = that turn's
  messages + its response (agent n's whole conversation; if its earlier assistant turns are not
  agent n's own responses it is skipped, counted as "inconsistent"); train_on=critic_loss.
- Mix (the authors' code): all of C- plus n_plus = min(|C+|, round(|C-| * (1 - w) / w)) C+
  (rounding half up) drawn with a RNG seeded by (seed, agent). w = 0: all C+, no C-; w = 1: C-
  only. No C- and w > 0 -> no critic data: that is the method; the stats give the "reason".
- Summarizer turns are never targets; agents n >= debate.agents get nothing from that debate;
  examples keep the debates' chronological order.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from maft.enums import ExampleKind, LabelSource, Role
from maft.exceptions import InvalidTaskOptionError
from maft.records import DebateRecord, TurnRecord
from maft.tasks.base import Message, Task

LossOn = Literal["all_assistant", "final"]
Majority = Literal["strict", "plurality"]
DROP_REASONS = ("other_task", "duplicate", "no_label", "no_majority", "low_consensus")
TRUNCATED = "truncated"


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
    """Every agent's dataset, keyed (role, agent_index), and JSON-friendly stats."""

    datasets: dict[tuple[str, int], AgentDataset]
    stats: dict[str, Any]


@dataclass(frozen=True)
class _Labelled:
    debate: DebateRecord
    label: str
    source: LabelSource


def _ground_truth(raw: str, task: Task) -> str:
    try:
        return task.normalize_reference(raw)
    except InvalidTaskOptionError:
        return raw.strip()


def label_of(debate: DebateRecord, config: CurationConfig,
             task: Task) -> tuple[str, LabelSource] | None:
    """(y_hat, source): feedback, then reference (if use_ground_truth), then the vote; or None."""
    truth = ((LabelSource.FEEDBACK, debate.feedback_answer),
             (LabelSource.REFERENCE, debate.reference_answer))
    for source, raw in truth if config.use_ground_truth else ():
        if raw is not None and raw.strip():
            return _ground_truth(raw, task), source
    return (debate.final_answer, LabelSource.VOTE) if debate.final_answer else None


def question_key(question: str) -> str:
    """The question, whitespace-normalised and case-folded (what dedupe compares)."""
    return " ".join(question.split()).casefold()


def _age(debate: DebateRecord) -> tuple[datetime, str]:
    return debate.created_at, debate.id


def dedupe_questions(debates: Sequence[DebateRecord]) -> list[DebateRecord]:
    """The newest debate (by created_at, then id) of each question, oldest first."""
    newest: dict[str, DebateRecord] = {}
    for debate in debates:
        key = question_key(debate.question)
        if key not in newest or _age(debate) > _age(newest[key]):
            newest[key] = debate
    return sorted(newest.values(), key=_age)


def _screen(debate: DebateRecord, config: CurationConfig, task: Task) -> _Labelled | str:
    """The labelled debate, or the reason it is dropped."""
    label = label_of(debate, config, task)
    if label is None:
        return "no_label"
    consensus = debate.consensus if debate.consensus is not None else 0.0
    if label[1] == LabelSource.VOTE and config.majority == "strict" and consensus <= 0.5:
        return "no_majority"
    if label[1] == LabelSource.VOTE and consensus < config.min_consensus:
        return "low_consensus"
    return _Labelled(debate, *label)


def _select(debates: Sequence[DebateRecord], task: Task, config: CurationConfig,
            dropped: Counter[str]) -> list[_Labelled]:
    """Usable debates, oldest first; counts the dropped ones by reason."""
    same_task = [d for d in debates if d.task == task.name]
    dropped["other_task"] = len(debates) - len(same_task)
    unique = dedupe_questions(same_task) if config.dedupe else sorted(same_task, key=_age)
    dropped["duplicate"] = len(same_task) - len(unique)
    verdicts = [_screen(debate, config, task) for debate in unique]
    dropped.update(v for v in verdicts if isinstance(v, str))
    return [v for v in verdicts if isinstance(v, _Labelled)]


def _example(turn: TurnRecord, item: _Labelled, kind: ExampleKind, train_on: LossOn
             ) -> Example:
    messages: list[Message] = [dict(m) for m in turn.messages]
    messages.append({"role": "assistant", "content": turn.text})
    return Example(tuple(messages), train_on, item.debate.id, item.label, item.source, kind)


def _generator_example(item: _Labelled, n: int, task: Task,
                       config: CurationConfig) -> Example | str | None:
    """Agent n's round-1 response as a single-turn example if it is right; TRUNCATED; None."""
    turn = item.debate.turn(1, Role.GENERATOR, n)
    if turn is None or not task.is_correct(turn.answer, item.label):
        return None
    if turn.truncated and config.drop_truncated:
        return TRUNCATED
    return _example(turn, item, ExampleKind.GENERATOR, "final")


def _own_turns(debate: DebateRecord, n: int, last: TurnRecord) -> list[TurnRecord] | None:
    """Agent n's earlier turns if they are exactly the assistant turns it was sent, else None."""
    sent = [m.get("content") for m in last.messages if m.get("role") == "assistant"]
    own = [debate.turn(r, Role.GENERATOR if r == 1 else Role.CRITIC, n)
           for r in range(1, last.round)]
    found = [t for t in own if t is not None]
    return found if len(found) == len(own) and sent == [t.text for t in found] else None


def _critic_example(item: _Labelled, n: int, task: Task,
                    config: CurationConfig) -> Example | str | None:
    """Agent n's conversation (C- / C+) if its last answer is right; "inconsistent";
    TRUNCATED (a turn that would carry loss hit the token limit); None."""
    debate = item.debate
    if debate.rounds < 2:
        return None
    first, last = debate.turn(1, Role.GENERATOR, n), debate.turn(debate.rounds, Role.CRITIC, n)
    if first is None or last is None or not task.is_correct(last.answer, item.label):
        return None
    earlier = _own_turns(debate, n, last)
    if earlier is None:
        return "inconsistent"
    targets = [last, *earlier] if config.critic_loss == "all_assistant" else [last]
    if config.drop_truncated and any(t.truncated for t in targets):
        return TRUNCATED
    kind = (ExampleKind.KEPT_CORRECT if task.is_correct(first.answer, item.label)
            else ExampleKind.CORRECTED)
    return _example(last, item, kind, config.critic_loss)


def plus_count(n_minus: int, n_plus: int, w: float) -> int:
    """How many C+ examples join all the C- ones so that C- makes up a share w."""
    if w <= 0.0:
        return n_plus
    return min(n_plus, math.floor(n_minus * (1.0 - w) / w + 0.5 + 1e-9))


def mix_critic(candidates: Sequence[Example], w: float, rng: random.Random) -> list[Example]:
    """All C- (none if w = 0) plus a seeded sample of C+, in the candidates' order."""
    n_minus = sum(e.kind == ExampleKind.CORRECTED for e in candidates)
    plus = [i for i, e in enumerate(candidates) if e.kind == ExampleKind.KEPT_CORRECT]
    chosen = set(rng.sample(plus, plus_count(n_minus, len(plus), w)))
    return [e for i, e in enumerate(candidates)
            if i in chosen or (e.kind == ExampleKind.CORRECTED and w > 0)]


def _generator_dataset(usable: Sequence[_Labelled], n: int, task: Task,
                       config: CurationConfig) -> AgentDataset:
    found = [_generator_example(item, n, task, config) for item in usable]
    examples = [e for e in found if isinstance(e, Example)]
    info: dict[str, Any] = {TRUNCATED: found.count(TRUNCATED)}
    if not examples:
        info["reason"] = "no right, complete first-round answer of this agent"
    return AgentDataset(Role.GENERATOR, n, examples, info)


def _critic_reason(any_candidate: bool, w: float) -> str:
    if not any_candidate:
        return "no conversation whose last-round answer is right (rounds >= 2)"
    return "no C- example: with w > 0, C+ only joins C-" if w else "w = 0 and no C+ example"


def _critic_dataset(usable: Sequence[_Labelled], n: int, task: Task,
                    config: CurationConfig) -> AgentDataset:
    found = [_critic_example(item, n, task, config) for item in usable]
    candidates = [e for e in found if isinstance(e, Example)]
    minus, plus = (sum(e.kind == k for e in candidates)
                   for k in (ExampleKind.CORRECTED, ExampleKind.KEPT_CORRECT))
    examples = mix_critic(candidates, config.w, random.Random(f"{config.seed}:critic:{n}"))
    info: dict[str, Any] = {"available": {"C-": minus, "C+": plus}, "w": config.w,
                            "inconsistent": found.count("inconsistent"),
                            TRUNCATED: found.count(TRUNCATED)}
    if not examples:
        info["reason"] = _critic_reason(bool(candidates), config.w)
    return AgentDataset(Role.CRITIC, n, examples, info)


def curate(debates: Sequence[DebateRecord], *, task: Task, agents: int,
           config: CurationConfig) -> Curation:
    """Build the 2 * `agents` datasets (generator n, critic n) from stored debates."""
    if agents < 1:
        raise ValueError("agents must be at least 1")
    dropped: Counter[str] = Counter()
    usable = _select(debates, task, config, dropped)
    datasets: dict[tuple[str, int], AgentDataset] = {}
    for n in range(agents):
        datasets[Role.GENERATOR, n] = _generator_dataset(usable, n, task, config)
        datasets[Role.CRITIC, n] = _critic_dataset(usable, n, task, config)
    sources = Counter(item.source for item in usable)
    stats: dict[str, Any] = {
        "task": task.name, "debates_seen": len(debates), "debates_used": len(usable),
        "dropped": {r: dropped[r] for r in DROP_REASONS},
        "label_sources": {str(s): sources[s] for s in LabelSource},
        "society_versions": sorted({item.debate.society_version for item in usable}),
    }
    stats.update({f"{role}-{n}": ds.stats() for (role, n), ds in datasets.items()})
    return Curation(datasets, stats)
