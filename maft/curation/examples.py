"""Each agent's examples from the usable debates (see the package docstring)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from maft.curation.labels import Labelled
from maft.curation.types import (
    TRUNCATED,
    AgentDataset,
    CurationConfig,
    Example,
    LossOn,
    Outcome,
)
from maft.enums import ExampleKind, Role
from maft.records import DebateRecord, TurnRecord
from maft.tasks.base import Message, Task


def _example(turn: TurnRecord, item: Labelled, kind: ExampleKind, train_on: LossOn
             ) -> Example:
    messages: list[Message] = [dict(m) for m in turn.messages]
    messages.append({"role": "assistant", "content": turn.text})
    return Example(tuple(messages), train_on, item.debate.id, item.label, item.source, kind)


def _generator_example(item: Labelled, n: int, task: Task,
                       config: CurationConfig) -> Example | str | None:
    """Agent n's round-1 response as a single-turn example if it is right; TRUNCATED; None."""
    turn = item.debate.turn(1, Role.GENERATOR, n)
    if turn is None:
        return Outcome.ABSENT
    if not task.is_correct(turn.answer, item.label):
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


def _critic_example(item: Labelled, n: int, task: Task,
                    config: CurationConfig) -> Example | str | None:
    """Agent n's conversation (C- / C+) if its last answer is right; "inconsistent";
    TRUNCATED (a turn that would carry loss hit the token limit); None."""
    debate = item.debate
    first, last = debate.turn(1, Role.GENERATOR, n), debate.turn(debate.rounds, Role.CRITIC, n)
    if debate.rounds < 2 or first is None or last is None:
        return Outcome.ABSENT
    if not task.is_correct(last.answer, item.label):
        return None
    earlier = _own_turns(debate, n, last)
    if earlier is None:
        return Outcome.INCONSISTENT
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


def _outcomes(usable: Sequence[Labelled], found: Sequence[Example | str | None],
              chosen: Sequence[Example]) -> dict[str, str]:
    """Debate id -> what became of the agent's response there."""
    picked = {id(e) for e in chosen}
    out: dict[str, str] = {}
    for item, result in zip(usable, found, strict=True):
        if isinstance(result, Example):
            out[item.debate.id] = result.kind if id(result) in picked else Outcome.NOT_MIXED
        else:
            out[item.debate.id] = result or Outcome.WRONG
    return out


def generator_dataset(usable: Sequence[Labelled], n: int, task: Task,
                      config: CurationConfig) -> AgentDataset:
    """Agent n's D_G: its own right, complete first-round answers."""
    found = [_generator_example(item, n, task, config) for item in usable]
    examples = [e for e in found if isinstance(e, Example)]
    info: dict[str, Any] = {TRUNCATED: found.count(TRUNCATED)}
    if not examples:
        info["reason"] = "no right, complete first-round answer of this agent"
    return AgentDataset(Role.GENERATOR, n, examples, info, _outcomes(usable, found, examples))


def _critic_reason(any_candidate: bool, w: float) -> str:
    if not any_candidate:
        return "no conversation whose last-round answer is right (rounds >= 2)"
    return "no C- example: with w > 0, C+ only joins C-" if w else "w = 0 and no C+ example"


def critic_dataset(usable: Sequence[Labelled], n: int, task: Task,
                   config: CurationConfig) -> AgentDataset:
    """Agent n's D_C: its corrected (C-) and kept-correct (C+) conversations, mixed by w."""
    found = [_critic_example(item, n, task, config) for item in usable]
    candidates = [e for e in found if isinstance(e, Example)]
    minus, plus = (sum(e.kind == k for e in candidates)
                   for k in (ExampleKind.CORRECTED, ExampleKind.KEPT_CORRECT))
    examples = mix_critic(candidates, config.w, random.Random(f"{config.seed}:critic:{n}"))
    info: dict[str, Any] = {"available": {"C-": minus, "C+": plus}, "w": config.w,
                            "inconsistent": found.count(Outcome.INCONSISTENT),
                            TRUNCATED: found.count(TRUNCATED)}
    if not examples:
        info["reason"] = _critic_reason(bool(candidates), config.w)
    return AgentDataset(Role.CRITIC, n, examples, info, _outcomes(usable, found, examples))
