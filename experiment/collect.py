"""Debates over a question split, saved one JSON line per finished debate (resumable), shared
between methods whenever one collection can stand in for another.

A `Need` is what a method asks for: its play (single / majority / debate) with its agents on a
split. A debate's round 1 *is* N independent answers, and its agent 0's round-1 answer *is* one
agent's answer, so a debate collection also serves the Majority and Base views of the same
generators: the same samples, analysed three ways (paired comparisons, a third of the cost).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiment.config import ExperimentConfig
from experiment.methods import Play
from maft.debate import DebateConfig, DebateOutcome, Roster
from maft.inference_client import ChatBackend
from maft.scoring import EvalSet, score
from maft.tasks import Problem, Task

_RANK = {"debate": 2, "majority": 1, "single": 0}


@dataclass(frozen=True)
class Need:
    """Debates a method needs: its play with these agents on one question split."""

    split: str  # "train", "test", or "train-hint" (STaR rationalisations)
    play: Play
    generators: tuple[str, ...]
    critics: tuple[str, ...]
    summarize: bool = False

    def shape(self, config: ExperimentConfig) -> tuple[int, int, bool]:
        """(agents, rounds, summarize) of the debates."""
        if self.play == "single":
            return 1, 1, False
        if self.play == "majority":
            return config.agents, 1, False
        return config.agents, config.rounds, self.summarize

    def players(self, config: ExperimentConfig) -> tuple[str, ...]:
        """The adapters that answer in these debates (generators, then critics)."""
        agents, rounds, _ = self.shape(config)
        return self.generators[:agents] + (self.critics[:agents] if rounds > 1 else ())

    def key(self, config: ExperimentConfig) -> str:
        """A stable file name: split, play and a hash of everything that shapes the debates."""
        agents, rounds, summarize = self.shape(config)
        parts = [self.split, self.play, self.generators[:agents],
                 self.critics[:agents] if rounds > 1 else (), summarize]
        digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]
        return f"{self.split}-{self.play}-{digest}"

    def serves(self, want: Need) -> bool:
        """Whether debates collected for `self` answer `want` too."""
        if self.split != want.split or _RANK[self.play] < _RANK[want.play]:
            return False
        if want.play == "single":
            return self.generators[:1] == want.generators[:1]
        if want.play == "majority":
            return self.generators == want.generators
        return (self.play, self.generators, self.critics, self.summarize) == (
            want.play, want.generators, want.critics, want.summarize)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Need:
        """Inverse of to_json."""
        return cls(data["split"], data["play"], tuple(data["generators"]),
                   tuple(data["critics"]), bool(data.get("summarize", False)))


def plan(wants: Sequence[Need], have: Sequence[Need]) -> tuple[list[Need], dict[Need, Need]]:
    """New collections to run, and for each want the collection that serves it (the first that
    can, in the order of `have` then `wants`: deterministic)."""
    pool, new, source = list(have), list[Need](), dict[Need, Need]()
    for want in sorted(dict.fromkeys(wants), key=lambda w: -_RANK[w.play]):
        found = next((h for h in pool if h.serves(want)), None)
        if found is None:
            found = want
            pool.append(want)
            new.append(want)
        source[want] = found
    return new, source


def turn_json(turn: Any) -> dict[str, Any]:
    """What is kept of a debate turn."""
    return {"round": turn.round, "agent_index": turn.agent_index, "role": turn.role,
            "lora_name": turn.lora_name, "messages": turn.messages, "text": turn.text,
            "answer": turn.answer, "completion_tokens": turn.completion_tokens,
            "finish_reason": turn.finish_reason}


def record_json(index: int, problem: Problem, outcome: DebateOutcome) -> dict[str, Any]:
    """One finished debate as a JSON line."""
    return {"index": index, "question": problem.question, "reference": problem.answer,
            "final_answer": outcome.final_answer, "consensus": outcome.consensus,
            "turns": [turn_json(t) for t in outcome.turns]}


def read_records(path: Path) -> dict[int, dict[str, Any]]:
    """The finished debates of a collection file by question index (a torn last line is ignored:
    that debate runs again)."""
    records: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        records[int(record["index"])] = record
    return records


def drop_torn_tail(path: Path) -> None:
    """Cut a partly written last line (a run killed mid-write) so appends start clean."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[:data.rfind(b"\n") + 1])


def _roster(need: Need, base_name: str) -> Roster:
    return Roster(0, need.generators, need.critics, base_name)


async def collect(need: Need, *, problems: Sequence[Problem], task: Task,
                  config: ExperimentConfig, backend: ChatBackend, path: Path, base_name: str,
                  concurrency: int, progress: Callable[[int, int], None] | None = None
                  ) -> list[dict[str, Any]]:
    """Run the debates of `need` that `path` does not hold yet; return all of them, in order."""
    done = read_records(path)
    missing = [i for i in range(len(problems)) if i not in done]
    agents, rounds, summarize = need.shape(config)
    shape = DebateConfig(agents=agents, rounds=rounds, summarize=summarize,
                         sampling=config.sampling)
    path.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(path)
    if missing:
        with path.open("a") as out:
            def save(k: int, outcome: DebateOutcome) -> None:
                record = record_json(missing[k], problems[missing[k]], outcome)
                done[missing[k]] = record
                out.write(json.dumps(record) + "\n")
                out.flush()

            def tick(n: int, _total: int) -> None:
                if progress:
                    progress(len(problems) - len(missing) + n, len(problems))

            data = EvalSet(need.split, task, [problems[i] for i in missing])
            await score(_roster(need, base_name), data, shape, backend, concurrency,
                        tick, save)
    return [done[i] for i in range(len(problems))]
