"""ORM tables (SQLAlchemy 2). Wire schemas live with the gateway; these are storage only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from maft.debate import MAX_ANSWER_CHARS
from maft.enums import DebateStatus, RunStatus, StepStatus

# SQLite only auto-increments INTEGER PRIMARY KEY, not BIGINT.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
# Lengths of the short text columns; the API validates its inputs against the same numbers.
ANSWER_CHARS, TASK_CHARS = MAX_ANSWER_CHARS, 64


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back aware (UTC) on every database.

    SQLite has no time zones: SQLAlchemy writes the wall clock of whatever it is given and reads
    naive values back, so instants written with different offsets did not compare. Converting
    every bound value (columns and filters alike) to UTC makes stored strings comparable;
    naive inputs are taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware UTC (naive values are taken as UTC)."""
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect
                             ) -> datetime | None:
        """Aware UTC, whatever the driver returned."""
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Society(Base):
    """A set of 2N agents. Version 0 is the base model for every agent (kind 'base')."""

    __tablename__ = "societies"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))  # SocietyKind
    status: Mapped[str] = mapped_column(String(16))  # SocietyStatus
    base_model_name: Mapped[str] = mapped_column(String(200))
    agents: Mapped[int] = mapped_column(Integer)
    parent_version: Mapped[int | None] = mapped_column(Integer)
    training_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("training_runs.id", ondelete="SET NULL"))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    adapters: Mapped[list[AdapterVersion]] = relationship(
        back_populates="society", order_by="AdapterVersion.role, AdapterVersion.agent_index")


class AdapterVersion(Base):
    """One LoRA adapter version; its lora_name is immutable and never reused."""

    __tablename__ = "adapter_versions"
    __table_args__ = (UniqueConstraint("society_version", "role", "agent_index"),)

    lora_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    society_version: Mapped[int] = mapped_column(ForeignKey("societies.version"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # Role.GENERATOR or Role.CRITIC
    agent_index: Mapped[int] = mapped_column(Integer)
    lora_path: Mapped[str] = mapped_column(String(500))  # the adapter folder, as vLLM means it
    base_model_name: Mapped[str] = mapped_column(String(200))
    parent_lora_name: Mapped[str | None] = mapped_column(String(200))
    rank: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    society: Mapped[Society] = relationship(back_populates="adapters")


class ActiveSociety(Base):
    """Single-row pointer to the society that serves debates; flipped in one transaction."""

    __tablename__ = "active_society"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    version: Mapped[int] = mapped_column(ForeignKey("societies.version"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    reason: Mapped[str] = mapped_column(String(200), default="")


class ApiKey(Base):
    """An API key: only its SHA-256 hash is stored; `prefix` finds it."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Debate(Base):
    """One debate: the request, the society that answered, the outcome."""

    __tablename__ = "debates"
    __table_args__ = (Index("ix_debates_task_created", "task", "created_at"),
                      Index("ix_debates_api_key_created", "api_key_id", "created_at"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow,
                                                 index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16), default=DebateStatus.RUNNING)
    source: Mapped[str] = mapped_column(String(16), default="api")
    task: Mapped[str] = mapped_column(String(TASK_CHARS))
    question: Mapped[str] = mapped_column(Text)
    agents: Mapped[int] = mapped_column(Integer)
    rounds: Mapped[int] = mapped_column(Integer)
    summarize: Mapped[bool] = mapped_column(Boolean)
    temperature: Mapped[float] = mapped_column(Float)
    top_p: Mapped[float] = mapped_column(Float)
    max_tokens: Mapped[int] = mapped_column(Integer)
    society_version: Mapped[int] = mapped_column(ForeignKey("societies.version"))
    final_answer: Mapped[str | None] = mapped_column(String(ANSWER_CHARS))
    consensus: Mapped[float | None] = mapped_column(Float)
    reference_answer: Mapped[str | None] = mapped_column(String(ANSWER_CHARS))
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"))
    responses: Mapped[list[AgentResponse]] = relationship(
        back_populates="debate", cascade="all, delete-orphan",
        order_by="AgentResponse.round, AgentResponse.role.desc(), AgentResponse.agent_index")
    feedback: Mapped[list[Feedback]] = relationship(
        back_populates="debate", cascade="all, delete-orphan", order_by="Feedback.id")


class AgentResponse(Base):
    """One model call of a debate: exactly what was sent and what came back."""

    __tablename__ = "agent_responses"
    __table_args__ = (UniqueConstraint("debate_id", "round", "role", "agent_index"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    debate_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("debates.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    agent_index: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    lora_name: Mapped[str] = mapped_column(String(200))
    messages: Mapped[list[Any]] = mapped_column()
    text: Mapped[str] = mapped_column(Text)
    parsed_answer: Mapped[str | None] = mapped_column(String(ANSWER_CHARS))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    debate: Mapped[Debate] = relationship(back_populates="responses")


class Feedback(Base):
    """A ground-truth label for a debate (the latest one counts)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    debate_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("debates.id", ondelete="CASCADE"), index=True)
    correct_answer: Mapped[str] = mapped_column(String(ANSWER_CHARS))
    note: Mapped[str | None] = mapped_column(Text)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    debate: Mapped[Debate] = relationship(back_populates="feedback")


class TrainingRun(Base):
    """One self-improvement run: curate -> train 2N agents -> evaluate -> publish."""

    __tablename__ = "training_runs"
    __table_args__ = (UniqueConstraint("active_lock", name="uq_training_runs_active_lock"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED, index=True)
    trigger: Mapped[str] = mapped_column(String(16), default="api")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    base_society_version: Mapped[int | None] = mapped_column(Integer)
    candidate_society_version: Mapped[int | None] = mapped_column(Integer)
    dataset_stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    evaluation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decision: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow,
                                                 index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # True while queued or running, NULL after: the unique constraint admits one live run.
    active_lock: Mapped[bool | None] = mapped_column(Boolean)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    steps: Mapped[list[TrainingStep]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="TrainingStep.id")


class TrainingStep(Base):
    """One step of a run (curate, train:<role>:<n>, evaluate, publish) with its progress."""

    __tablename__ = "training_steps"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    eta_s: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Written by the worker running the step; a running step whose heartbeat stops is stuck.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    run: Mapped[TrainingRun] = relationship(back_populates="steps")


class CurationOutcome(Base):
    """What a training run's curation made of a debate (role NULL: the whole debate was
    dropped, `outcome` says why) or of one agent's response (G, C-, C+, wrong, truncated...)."""

    __tablename__ = "curation_outcomes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), index=True)
    debate_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("debates.id", ondelete="CASCADE"), index=True)
    role: Mapped[str | None] = mapped_column(String(16))
    agent_index: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(32))
    label: Mapped[str | None] = mapped_column(String(200))
    label_source: Mapped[str | None] = mapped_column(String(16))
