"""/v1/debates: ask, read, list, label."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from maft.db import crud
from maft.db.models import TASK_CHARS
from maft.exceptions import NotFoundError
from services.gateway import operations, views
from services.gateway.admission import while_connected
from services.gateway.debates import build_request
from services.gateway.deps import (
    DebateServiceDep,
    LimiterDep,
    QueryPrincipal,
    SettingsDep,
    StoreDep,
)
from services.gateway.schemas import (
    DebateCreate,
    DebateOut,
    DebatePage,
    ErrorOut,
    FeedbackCreate,
    FeedbackOut,
    Text,
)

router = APIRouter(prefix="/v1/debates", tags=["debates"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 422, 429, 503, 504)}


def parse_id(debate_id: str) -> uuid.UUID:
    """A debate id from the path; a malformed one is simply not found."""
    try:
        return uuid.UUID(debate_id)
    except ValueError:
        raise NotFoundError("debate", debate_id) from None


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DebateOut,
             responses=ERRORS)
async def create_debate(body: DebateCreate, raw: Request, principal: QueryPrincipal,
                        settings: SettingsDep, service: DebateServiceDep,
                        limiter: LimiterDep) -> DebateOut:
    """Ask a question; the agents debate and the majority answers. Every turn is stored.

    At capacity the answer is an immediate 503 with Retry-After; over the key's rate, 429. If
    the client disconnects, the debate is cancelled (its vLLM requests too) and stored failed.
    """
    if principal.key_id is not None:
        await limiter.hit("debates", str(principal.key_id),
                          settings.debate_rate_limit_per_minute)
    request = build_request(
        settings, question=body.question, task=body.task, agents=body.agents,
        rounds=body.rounds, summarize=body.summarize, temperature=body.temperature,
        top_p=body.top_p, max_tokens=body.max_tokens, reference_answer=body.reference_answer,
        api_key_id=principal.key_id)
    return views.detail(await while_connected(raw.receive, service.serve(request)))


@router.get("/{debate_id}", response_model=DebateOut, responses={404: {"model": ErrorOut}})
async def get_debate(debate_id: str, principal: QueryPrincipal, store: StoreDep) -> DebateOut:
    """A debate with its whole transcript (a query key sees only its own debates)."""
    debate = await store.call(crud.get_debate, debate_id=parse_id(debate_id),
                              owner=principal.owner)
    return views.detail(debate)


@router.get("", response_model=DebatePage)
async def list_debates(
    principal: QueryPrincipal, store: StoreDep,
    task: Annotated[Text | None, Query(max_length=TASK_CHARS)] = None,
    status_: Annotated[str | None, Query(alias="status", pattern="^(running|completed|failed)$")]
    = None,
    since: datetime | None = None, until: datetime | None = None,
    cursor: Annotated[Text | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DebatePage:
    """Debates newest first; filter by task, status and time range (instants: a time without
    a zone is UTC); page with `cursor`. A query key lists only its own debates."""
    try:
        page, next_cursor = await store.call(
            crud.list_debates, task=task, status=status_, since=since, until=until,
            cursor=cursor, limit=limit, owner=principal.owner)
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}; pass back a next_cursor value") from None
    return DebatePage(data=[views.summary(d) for d in page], next_cursor=next_cursor)


@router.post("/{debate_id}/feedback", status_code=status.HTTP_201_CREATED,
             response_model=FeedbackOut, responses={404: {"model": ErrorOut}})
async def add_feedback(debate_id: str, body: FeedbackCreate, principal: QueryPrincipal,
                       store: StoreDep) -> FeedbackOut:
    """Store the correct answer of a debate (a query key labels only its own debates). It is
    training ground truth when the key is a trusted labeller (scope label or admin)."""
    feedback = await operations.record_feedback(
        store, debate_id=parse_id(debate_id), correct_answer=body.correct_answer,
        note=body.note, api_key_id=principal.key_id, owner=principal.owner)
    return FeedbackOut.model_validate(feedback)

