"""Data access: debates, their responses and feedback."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.orm import Session, selectinload

from maft.db.models import AgentResponse, Debate, Feedback, as_utc, utcnow
from maft.debate import DebateConfig, DebateOutcome, Turn
from maft.enums import DebateStatus
from maft.exceptions import NotFoundError


def create_debate(db: Session, *, question: str, task: str, config: DebateConfig,
                  society_version: int, reference_answer: str | None = None,
                  source: str = "api", api_key_id: uuid.UUID | None = None) -> Debate:
    """Insert a debate in status 'running'."""
    s = config.sampling
    debate = Debate(question=question, task=task, agents=config.agents, rounds=config.rounds,
                    summarize=config.summarize, temperature=s.temperature, top_p=s.top_p,
                    max_tokens=s.max_tokens, society_version=society_version,
                    reference_answer=reference_answer, source=source, api_key_id=api_key_id)
    db.add(debate)
    db.flush()
    return debate


def add_response(db: Session, *, debate_id: uuid.UUID, turn: Turn) -> None:
    """Store one turn of a debate."""
    db.add(AgentResponse(
        debate_id=debate_id, round=turn.round, agent_index=turn.agent_index, role=turn.role,
        lora_name=turn.lora_name, messages=turn.messages, text=turn.text,
        parsed_answer=turn.answer, prompt_tokens=turn.prompt_tokens,
        completion_tokens=turn.completion_tokens, latency_ms=turn.latency_ms,
        finish_reason=turn.finish_reason))


def _close(db: Session, debate_id: uuid.UUID, latency_ms: float) -> Debate:
    debate = db.get(Debate, debate_id)
    if debate is None:
        raise NotFoundError("debate", debate_id)
    rows = db.scalars(select(AgentResponse).where(AgentResponse.debate_id == debate_id)).all()
    debate.prompt_tokens = sum(r.prompt_tokens for r in rows)
    debate.completion_tokens = sum(r.completion_tokens for r in rows)
    debate.latency_ms, debate.finished_at = latency_ms, utcnow()
    return debate


def finish_debate(db: Session, *, debate_id: uuid.UUID, outcome: DebateOutcome,
                  latency_ms: float) -> Debate:
    """Mark a debate completed with its vote."""
    debate = _close(db, debate_id, latency_ms)
    debate.status, debate.final_answer = DebateStatus.COMPLETED, outcome.final_answer
    debate.consensus = outcome.consensus
    return debate


def fail_debate(db: Session, *, debate_id: uuid.UUID, error: str, latency_ms: float) -> Debate:
    """Mark a debate failed; its partial transcript stays."""
    debate = _close(db, debate_id, latency_ms)
    debate.status, debate.error = DebateStatus.FAILED, error
    return debate


def get_debate(db: Session, *, debate_id: uuid.UUID, owner: uuid.UUID | None = None
               ) -> Debate:
    """A debate with its responses and feedback; NotFoundError if absent, or if `owner` is
    given and the debate belongs to another key (or to none)."""
    query = select(Debate).where(Debate.id == debate_id).options(
        selectinload(Debate.responses), selectinload(Debate.feedback))
    if owner is not None:
        query = query.where(Debate.api_key_id == owner)
    debate = db.scalar(query)
    if debate is None:
        raise NotFoundError("debate", debate_id)
    return debate


def encode_cursor(debate: Debate) -> str:
    """Opaque cursor after `debate` in newest-first order."""
    raw = f"{debate.created_at.isoformat()}|{debate.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of encode_cursor; ValueError if malformed."""
    try:
        stamp, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return as_utc(datetime.fromisoformat(stamp)), uuid.UUID(key)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc


@dataclass(frozen=True)
class DebateFilter:
    """Which debates a listing shows (every field optional)."""

    task: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    society_version: int | None = None
    has_feedback: bool | None = None
    min_consensus: float | None = None  # inclusive
    below_consensus: float | None = None  # exclusive

    def apply(self, query: Select[Debate]) -> Select[Debate]:
        """`query` narrowed to the debates this filter admits."""
        labelled = exists().where(Feedback.debate_id == Debate.id)
        for wanted, clause in (
                (self.task, lambda: Debate.task == self.task),
                (self.status, lambda: Debate.status == self.status),
                (self.since, lambda: Debate.created_at >= self.since),
                (self.until, lambda: Debate.created_at < self.until),
                (self.society_version, lambda: Debate.society_version == self.society_version),
                (self.has_feedback, lambda: labelled if self.has_feedback else ~labelled),
                (self.min_consensus, lambda: Debate.consensus >= self.min_consensus),
                (self.below_consensus, lambda: Debate.consensus < self.below_consensus)):
            if wanted is not None and wanted != "":
                query = query.where(clause())
        return query


def list_debates(db: Session, *, task: str | None = None, status: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 cursor: str | None = None, limit: int = 50,
                 where: DebateFilter | None = None, owner: uuid.UUID | None = None
                 ) -> tuple[list[Debate], str | None]:
    """Debates newest first with filters (`where` adds to the others; `owner`: only that key's);
    returns (page, next cursor or None). Times compare as instants (the column type converts
    them to UTC)."""
    query = select(Debate).options(selectinload(Debate.feedback))
    if owner is not None:
        query = query.where(Debate.api_key_id == owner)
    query = DebateFilter(task=task, status=status, since=since, until=until).apply(query)
    if where is not None:
        query = where.apply(query)
    if cursor:
        stamp, key = decode_cursor(cursor)
        query = query.where(or_(Debate.created_at < stamp,
                                and_(Debate.created_at == stamp, Debate.id < key)))
    rows = list(db.scalars(query.order_by(Debate.created_at.desc(), Debate.id.desc())
                           .limit(limit + 1)))
    more = len(rows) > limit
    page = rows[:limit]
    return page, encode_cursor(page[-1]) if more and page else None


def add_feedback(db: Session, *, debate_id: uuid.UUID, correct_answer: str,
                 note: str | None = None, api_key_id: uuid.UUID | None = None,
                 owner: uuid.UUID | None = None) -> Feedback:
    """Store a ground-truth label given by `api_key_id`; NotFoundError if the debate is absent
    (or, with `owner`, not that key's)."""
    debate = db.get(Debate, debate_id)
    if debate is None or (owner is not None and debate.api_key_id != owner):
        raise NotFoundError("debate", debate_id)
    feedback = Feedback(debate_id=debate_id, correct_answer=correct_answer, note=note,
                        api_key_id=api_key_id)
    db.add(feedback)
    db.flush()
    return feedback


def fail_stale_debates(db: Session, *, before: datetime) -> int:
    """Mark debates still 'running' since before `before` as failed (their gateway died)."""
    stale = db.scalars(select(Debate).where(Debate.status == DebateStatus.RUNNING,
                                            Debate.created_at < before)).all()
    for debate in stale:
        debate.status, debate.finished_at = DebateStatus.FAILED, utcnow()
        debate.error = "interrupted: the gateway stopped before the debate finished"
    return len(stale)
