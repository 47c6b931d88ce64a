"""Reading a collection the way a method answers: predictions, accuracy, labels, curation input."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from experiment.methods import Play
from maft.enums import Role
from maft.records import DebateRecord, TurnRecord
from maft.tasks import Task
from maft.voting import Vote, majority_vote

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def round_turns(record: dict[str, Any], round_no: int, agents: int) -> list[dict[str, Any]]:
    """The turns of one round of agents 0..agents-1, in agent order (summaries excluded)."""
    turns = [t for t in record["turns"] if t["round"] == round_no and t["role"] != Role.SUMMARIZER
             and t["agent_index"] < agents]
    return sorted(turns, key=lambda t: t["agent_index"])


def last_round(record: dict[str, Any], play: Play) -> int:
    """The last round a play reads: 1 for single and majority, else the debate's last."""
    return 1 if play != "debate" else max(t["round"] for t in record["turns"])


def play_turns(record: dict[str, Any], play: Play, agents: int) -> list[dict[str, Any]]:
    """The agent turns a play reads (one agent's first answer; round 1; every round)."""
    if play == "single":
        return round_turns(record, 1, 1)
    return [t for k in range(1, last_round(record, play) + 1)
            for t in round_turns(record, k, agents)]


def prediction(record: dict[str, Any], play: Play, agents: int, task: Task) -> str | None:
    """The answer a method of this play gives, read from a (possibly larger) debate."""
    if play == "single":
        return round_turns(record, 1, 1)[0]["answer"]
    if play == "majority":
        answers = [t["answer"] for t in round_turns(record, 1, agents)]
        return majority_vote(answers, task.equivalent).answer
    return record["final_answer"]


def final_vote(record: dict[str, Any], play: Play, agents: int, task: Task) -> Vote | None:
    """The vote over the play's last round (round 1 for majority; None for one agent)."""
    if play == "single":
        return None
    answers = [t["answer"] for t in round_turns(record, last_round(record, play), agents)]
    return majority_vote(answers, task.equivalent)


def consensus(record: dict[str, Any], play: Play, agents: int, task: Task) -> float | None:
    """Share of agents agreeing with the vote of the play's last round (None for one agent)."""
    vote = final_vote(record, play, agents, task)
    return None if vote is None else vote.consensus


def truncated_share(records: Sequence[dict[str, Any]], play: Play, agents: int) -> float | None:
    """Share of the play's model calls that stopped at the token limit (None: no calls)."""
    turns = [t for r in records for t in play_turns(r, play, agents)]
    return sum(t.get("finish_reason") == "length" for t in turns) / len(turns) if turns else None


def accuracy(correct: Sequence[bool]) -> dict[str, Any]:
    """Accuracy with its binomial standard error, and the per-question outcomes."""
    n = len(correct)
    p = sum(correct) / n if n else 0.0
    return {"accuracy": p, "stderr": math.sqrt(p * (1 - p) / n) if n else None, "n": n,
            "correct": int(sum(correct)), "per_question": [int(c) for c in correct]}


def paired(a: Sequence[int], b: Sequence[int]) -> dict[str, Any]:
    """Mean of a - b over the same questions, with the standard error of paired differences."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n if n else 0.0
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n) if n else 0.0
    return {"diff": mean, "stderr": se, "n": n, "within_noise": abs(mean) <= 2 * se}


def agent_accuracy(records: Sequence[dict[str, Any]], agents: int,
                   task: Task) -> list[list[float]]:
    """Each agent's own accuracy in each round (rows: rounds), to see where a debate gains or
    loses answers: generators in round 1, critics after."""
    if not records:
        return []
    rounds = max(t["round"] for r in records for t in r["turns"])
    table = []
    for k in range(1, rounds + 1):
        hits = [[task.is_correct(t["answer"], r["reference"]) for t in round_turns(r, k, agents)]
                for r in records]
        table.append([sum(h[i] for h in hits) / len(hits) for i in range(agents)])
    return table


def score_play(records: Sequence[dict[str, Any]], play: Play, agents: int,
               task: Task) -> dict[str, Any]:
    """Accuracy of a play over a collection, with the mean consensus of its last round
    (`consensus_final`: round 1 for majority, the final round for debate) and unparsed rate."""
    preds = [prediction(r, play, agents, task) for r in records]
    result = accuracy([task.is_correct(p, r["reference"]) for p, r in zip(preds, records,
                                                                         strict=True)])
    shares = [c for r in records if (c := consensus(r, play, agents, task)) is not None]
    result["consensus_final"] = sum(shares) / len(shares) if shares else None
    result["unparsed"] = sum(p is None for p in preds) / len(preds) if preds else 0.0
    return result


def _turn_record(turn: dict[str, Any]) -> TurnRecord:
    return TurnRecord(turn["round"], turn["agent_index"], turn["role"], turn["lora_name"],
                      tuple(dict(m) for m in turn["messages"]), turn["text"], turn["answer"],
                      turn.get("finish_reason"))


def debate_records(records: Sequence[dict[str, Any]], *, play: Play, agents: int, task: Task,
                   key: str, society_version: int = 0, reference: bool = False,
                   feedback: Collection[int] = ()) -> list[DebateRecord]:
    """Curation input: the play's view of each debate, with its vote as final answer. The
    reference answer is withheld (MAFT is unsupervised) unless `reference` (every debate
    carries it) or the question index is in `feedback` (it comes as the feedback answer)."""
    rounds = 1 if play == "majority" else max(t["round"] for r in records for t in r["turns"])
    out = []
    for r in records:
        turns = [_turn_record(t) for t in r["turns"] if t["round"] <= rounds
                 and t["agent_index"] < agents]
        out.append(DebateRecord(
            id=f"{key}:{r['index']}", question=r["question"], task=task.name,
            created_at=EPOCH + timedelta(seconds=r["index"]), society_version=society_version,
            agents=agents, rounds=rounds, final_answer=prediction(r, play, agents, task),
            consensus=consensus(r, play, agents, task),
            reference_answer=r["reference"] if reference else None,
            feedback_answer=r["reference"] if r["index"] in feedback else None,
            turns=tuple(turns)))
    return out


def vote_accuracy(records: Sequence[dict[str, Any]], play: Play, agents: int,
                  task: Task) -> float:
    """How often the play's vote (the unsupervised label) is the true answer, over all
    debates (labelled or not)."""
    hits = [task.is_correct(prediction(r, play, agents, task), r["reference"]) for r in records]
    return sum(hits) / len(hits) if hits else 0.0
