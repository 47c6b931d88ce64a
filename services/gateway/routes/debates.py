"""/v1/debates: ask, read, list, label."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from maft.db import crud
from maft.exceptions import NotFoundError
from services.gateway import operations, views
from services.gateway.debates import build_request
from services.gateway.deps import DebateServiceDep, QueryPrincipal, SettingsDep, StoreDep
from services.gateway.schemas import (
    DebateCreate,
    DebateOut,
    DebatePage,
    ErrorOut,
    FeedbackCreate,
    FeedbackOut,
)

router = APIRouter(prefix="/v1/debates", tags=["debates"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 422, 503, 504)}


def parse_id(debate_id: str) -> uuid.UUID:
    """A debate id from the path; a malformed one is simply not found."""
    try:
        return uuid.UUID(debate_id)
    except ValueError:
        raise NotFoundError("debate", debate_id) from None


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DebateOut,
             responses=ERRORS)
async def create_debate(body: DebateCreate, principal: QueryPrincipal, settings: SettingsDep,
                        service: DebateServiceDep) -> DebateOut:
    """Ask a question; the agents debate and the majority answers. Every turn is stored."""
    request = build_request(
        settings, question=body.question, task=body.task, agents=body.agents,
        rounds=body.rounds, summarize=body.summarize, temperature=body.temperature,
        top_p=body.top_p, max_tokens=body.max_tokens, reference_answer=body.reference_answer,
        api_key_id=principal.key_id)
    debate_id, roster = await service.start(request)
    return views.detail(await service.run(request, debate_id, roster))


@router.get("/{debate_id}", response_model=DebateOut, responses={404: {"model": ErrorOut}})
async def get_debate(debate_id: str, _: QueryPrincipal, store: StoreDep) -> DebateOut:
    """A debate with its whole transcript."""
    debate = await store.call(crud.get_debate, debate_id=parse_id(debate_id))
    return views.detail(debate)


@router.get("", response_model=DebatePage)
async def list_debates(
    _: QueryPrincipal, store: StoreDep,
    task: str | None = None,
    status_: Annotated[str | None, Query(alias="status", pattern="^(running|completed|failed)$")]
    = None,
    since: datetime | None = None, until: datetime | None = None, cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DebatePage:
    """Debates newest first; filter by task, status and time range; page with `cursor`."""
    try:
        page, next_cursor = await store.call(
            crud.list_debates, task=task, status=status_, since=since, until=until,
            cursor=cursor, limit=limit)
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}; pass back a next_cursor value") from None
    return DebatePage(data=[views.summary(d) for d in page], next_cursor=next_cursor)


@router.post("/{debate_id}/feedback", status_code=status.HTTP_201_CREATED,
             response_model=FeedbackOut, responses={404: {"model": ErrorOut}})
async def add_feedback(debate_id: str, body: FeedbackCreate, principal: QueryPrincipal,
                       store: StoreDep) -> FeedbackOut:
    """Store the correct answer of a debate as a ground-truth label."""
    feedback = await operations.record_feedback(
        store, debate_id=parse_id(debate_id), correct_answer=str(body.correct_answer),
        note=body.note, api_key_id=principal.key_id)
    return FeedbackOut.model_validate(feedback)
