"""Which debates curation uses, and with which label (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from maft.curation.types import CurationConfig
from maft.enums import LabelSource
from maft.exceptions import InvalidTaskOptionError
from maft.records import DebateRecord
from maft.tasks.base import Task


@dataclass(frozen=True)
class Labelled:
    """A usable debate with its training label and where the label came from."""

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


def _screen(debate: DebateRecord, config: CurationConfig, task: Task) -> Labelled | str:
    """The labelled debate, or the reason it is dropped."""
    label = label_of(debate, config, task)
    if label is None:
        return "no_label"
    consensus = debate.consensus if debate.consensus is not None else 0.0
    if label[1] == LabelSource.VOTE and config.majority == "strict" and consensus <= 0.5:
        return "no_majority"
    if label[1] == LabelSource.VOTE and consensus < config.min_consensus:
        return "low_consensus"
    return Labelled(debate, *label)


def select(debates: Sequence[DebateRecord], task: Task, config: CurationConfig,
           dropped: dict[str, str]) -> list[Labelled]:
    """Usable debates, oldest first; records each dropped one's reason in `dropped`."""
    same_task = [d for d in debates if d.task == task.name]
    dropped.update({d.id: "other_task" for d in debates if d.task != task.name})
    unique = dedupe_questions(same_task) if config.dedupe else sorted(same_task, key=_age)
    kept = {d.id for d in unique}
    dropped.update({d.id: "duplicate" for d in same_task if d.id not in kept})
    verdicts = [(debate.id, _screen(debate, config, task)) for debate in unique]
    dropped.update({i: v for i, v in verdicts if isinstance(v, str)})
    return [v for _, v in verdicts if isinstance(v, Labelled)]
