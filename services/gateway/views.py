"""ORM rows -> wire schemas."""

from __future__ import annotations

from itertools import groupby

from maft.db.models import Debate
from maft.enums import Role
from maft.exceptions import UnknownTaskError
from maft.tasks import Task, get_task
from maft.voting import majority_vote
from services.gateway.schemas import (
    DebateOut,
    DebateSummary,
    FeedbackOut,
    ResponseOut,
    RoundOut,
    Usage,
)


def task_of(name: str) -> Task:
    """The task a stored debate used (numeric if it no longer exists)."""
    try:
        return get_task(name)
    except UnknownTaskError:  # a task removed since the debate ran: compare as numbers
        return get_task("numeric")


def summary(debate: Debate) -> DebateSummary:
    """A debate without its transcript."""
    usage = Usage(prompt_tokens=debate.prompt_tokens, completion_tokens=debate.completion_tokens,
                  total_tokens=debate.prompt_tokens + debate.completion_tokens)
    label = debate.feedback[-1].correct_answer if debate.feedback else None
    fields = {k: getattr(debate, k) for k in DebateSummary.model_fields
              if k not in ("usage", "correct_answer")}
    return DebateSummary(**fields, usage=usage, correct_answer=label)


def rounds(debate: Debate) -> list[RoundOut]:
    """The transcript grouped by round, each with that round's majority over its agents."""
    task, out = task_of(debate.task), []
    for number, rows in groupby(sorted(debate.responses, key=lambda r: r.round),
                                key=lambda r: r.round):
        responses = [ResponseOut.model_validate(r) for r in rows]
        agents = sorted((r for r in responses if r.role != Role.SUMMARIZER),
                        key=lambda r: r.agent_index)
        vote = majority_vote([r.parsed_answer for r in agents], task.equivalent)
        out.append(RoundOut(round=number, majority_answer=vote.answer,
                            consensus=vote.consensus, responses=responses))
    return out


def detail(debate: Debate) -> DebateOut:
    """A debate with its transcript and feedback."""
    return DebateOut(**summary(debate).model_dump(), transcript=rounds(debate),
                     feedback=[FeedbackOut.model_validate(f) for f in debate.feedback])
