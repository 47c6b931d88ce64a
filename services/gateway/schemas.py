"""Wire schemas of the public API (separate from the ORM tables)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from maft.db.models import ANSWER_CHARS, TASK_CHARS
from maft.debate import MAX_AGENTS, MAX_ROUNDS
from maft.enums import DebateStatus

MAX_QUESTION_CHARS = 4000
MAX_NOTE_CHARS = 2000


def no_nul(value: str) -> str:
    """Reject NUL characters: PostgreSQL cannot store them in text."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


def answer_text(value: str | int | float) -> str:
    """An answer as stored: text of at most ANSWER_CHARS characters, without NUL."""
    text = no_nul(str(value))
    if len(text) > ANSWER_CHARS:
        raise ValueError(f"must be at most {ANSWER_CHARS} characters")
    return text


Text = Annotated[str, AfterValidator(no_nul)]
Answer = Annotated[str | int | float, AfterValidator(answer_text)]


class Strict(BaseModel):
    """Request bodies: unknown fields and wrong types are errors, not guesses."""

    model_config = ConfigDict(extra="forbid", strict=True)


class DebateCreate(Strict):
    """POST /v1/debates. Unset fields take the gateway's defaults."""

    question: Text = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    task: Text | None = Field(default=None, max_length=TASK_CHARS,
                              description="numeric (default), arithmetic, gsm8k, math")
    agents: int | None = Field(default=None, ge=1, le=MAX_AGENTS)
    rounds: int | None = Field(default=None, ge=1, le=MAX_ROUNDS)
    summarize: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    reference_answer: Answer | None = Field(
        default=None, description="Known correct answer, stored as ground truth (counted in "
        "training when the key is a trusted labeller: scope label or admin).")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must not be blank")
        return value.strip()


class Usage(BaseModel):
    """Token accounting."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseOut(BaseModel):
    """One model call of a debate."""

    model_config = ConfigDict(from_attributes=True)

    round: int
    agent_index: int
    role: str
    lora_name: str
    text: str
    parsed_answer: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str | None
    messages: list[dict[str, Any]]


class RoundOut(BaseModel):
    """One round: every agent's response and that round's majority."""

    round: int
    majority_answer: str | None
    consensus: float
    responses: list[ResponseOut]


class FeedbackCreate(Strict):
    """POST /v1/debates/{id}/feedback."""

    model_config = ConfigDict(extra="forbid", strict=False)

    correct_answer: Answer
    note: Text | None = Field(default=None, max_length=MAX_NOTE_CHARS)


class FeedbackOut(BaseModel):
    """A stored ground-truth label."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    debate_id: uuid.UUID
    correct_answer: str
    note: str | None
    api_key_id: uuid.UUID | None = Field(description="The key that gave it (null: auth off).")
    created_at: datetime


class DebateSummary(BaseModel):
    """A debate without its transcript."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: DebateStatus
    created_at: datetime
    finished_at: datetime | None
    source: str
    task: str
    question: str
    agents: int
    rounds: int
    summarize: bool
    temperature: float
    top_p: float
    max_tokens: int
    society_version: int
    final_answer: str | None
    consensus: float | None
    reference_answer: str | None
    correct_answer: str | None = Field(default=None, description="Latest feedback label.")
    error: str | None
    usage: Usage
    latency_ms: float | None


class DebateOut(DebateSummary):
    """A debate with every round's every response."""

    transcript: list[RoundOut]
    feedback: list[FeedbackOut]


class DebatePage(BaseModel):
    """A page of debates, newest first."""

    data: list[DebateSummary]
    next_cursor: str | None


class ErrorBody(BaseModel):
    """Error payload (OpenAI-style, so OpenAI clients show the message)."""

    message: str
    type: str
    param: str | None = None
    code: int | None = None
    debate_id: uuid.UUID | None = None


class ErrorOut(BaseModel):
    """Every error response."""

    error: ErrorBody


class AdapterOut(BaseModel):
    """One adapter version."""

    model_config = ConfigDict(from_attributes=True)

    lora_name: str
    role: str
    agent_index: int
    lora_path: str
    parent_lora_name: str | None
    rank: int
    metrics: dict[str, Any]
    created_at: datetime


class SocietyOut(BaseModel):
    """A society: the base model for every agent (v0) or 2N adapters."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    kind: str
    status: str
    active: bool
    base_model_name: str
    agents: int
    parent_version: int | None
    training_run_id: uuid.UUID | None
    metrics: dict[str, Any]
    created_at: datetime
    adapters: list[AdapterOut]

    @classmethod
    def from_row(cls, row: Any, *, active: int) -> SocietyOut:
        """From an ORM Society."""
        data = {k: getattr(row, k) for k in cls.model_fields if k not in ("active", "adapters")}
        adapters = [AdapterOut.model_validate(a) for a in row.adapters]
        return cls(**data, active=row.version == active, adapters=adapters)


class SocietyList(BaseModel):
    """Every society, newest first, and which one serves debates."""

    active_version: int
    societies: list[SocietyOut]
