"""Console: ask (the debate streams in round by round), the debate list, one debate, feedback."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from maft.db import crud
from maft.tasks import task_names
from services.gateway import operations
from services.gateway.console import views
from services.gateway.console.auth import PostDep, SessionDep
from services.gateway.console.pages import PREFIX, filled, fragment, render
from services.gateway.console.stream import Hub, debate_events, drive
from services.gateway.debates import build_request
from services.gateway.deps import DebateServiceDep, LimiterDep, SettingsDep, StoreDep
from services.gateway.routes.debates import parse_id
from services.gateway.schemas import DebateCreate

router = APIRouter(prefix=PREFIX, include_in_schema=False)
CONSENSUS = {"unanimous": (1.0, None), "split": (None, 1.0)}
PAGE = 25


def _hub(request: Request) -> Hub:
    return request.app.state.console_hub


@router.get("/ask", response_class=HTMLResponse)
async def ask_form(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The question form."""
    return render(request, "ask.html", session, tasks=task_names(), settings=settings,
                  values={}, errors=[])


@router.post("/ask")
async def ask(request: Request, session: PostDep, settings: SettingsDep,
              service: DebateServiceDep, limiter: LimiterDep) -> Response:
    """Start a debate (validated like POST /v1/debates) and open its page, which streams it."""
    values = filled(dict(await request.form()))
    values["summarize"] = "summarize" in values
    try:
        body = DebateCreate.model_validate(values, strict=False)
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return render(request, "ask.html", session, status=422, tasks=task_names(),
                      settings=settings, values=values, errors=errors)
    debate_request = build_request(
        settings, question=body.question, task=body.task, agents=body.agents,
        rounds=body.rounds, summarize=body.summarize, temperature=body.temperature,
        top_p=body.top_p, max_tokens=body.max_tokens, reference_answer=body.reference_answer,
        source="console", api_key_id=session.principal.key_id)
    if session.principal.key_id is not None:  # the API's limits apply to the console too
        await limiter.hit("debates", str(session.principal.key_id),
                          settings.debate_rate_limit_per_minute)
    debate_id, roster, release = await service.open(debate_request)
    operations.spawn(request.app.state.jobs,
                     drive(service, debate_request, debate_id, roster, _hub(request), release))
    return RedirectResponse(f"{PREFIX}/debates/{debate_id}", status_code=303)


def _filter(params: dict[str, str]) -> crud.DebateFilter:
    def stamp(name: str) -> datetime | None:  # datetime-local fields carry no zone: UTC
        if not params.get(name):
            return None
        value = datetime.fromisoformat(params[name])
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    low, below = CONSENSUS.get(params.get("consensus", ""), (None, None))
    feedback = {"yes": True, "no": False}.get(params.get("feedback", ""))
    version = params.get("society")
    return crud.DebateFilter(
        task=params.get("task") or None, status=params.get("status") or None,
        since=stamp("since"), until=stamp("until"), has_feedback=feedback,
        society_version=int(version) if version and version.isdigit() else None,
        min_consensus=low, below_consensus=below)


@router.get("/debates", response_class=HTMLResponse)
async def debate_list(request: Request, session: SessionDep, store: StoreDep,
                      cursor: Annotated[str | None, Query()] = None) -> Response:
    """Debates newest first, filtered by task, status, consensus, feedback, society, time."""
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    try:
        where = _filter(params)
        page, next_cursor = await store.call(crud.list_debates, where=where, cursor=cursor,
                                             owner=session.principal.owner,
                                             limit=PAGE)
    except ValueError as exc:
        return render(request, "error.html", session, status=422, message=f"filter: {exc}")
    return render(request, "debates.html", session, debates=page, next_cursor=next_cursor,
                  params=params, tasks=task_names())


def _detail(db: Session, *, debate_id: uuid.UUID, owner: uuid.UUID | None) -> dict[str, Any]:
    debate = crud.get_debate(db, debate_id=debate_id, owner=owner)
    outcomes = crud.outcomes_of_debate(db, debate_id=debate_id)
    grid = views.rounds(debate)
    views.attach_outcomes(grid, outcomes)
    return {"debate": debate, "grid": grid, "dropped": views.dropped(outcomes),
            "outcome_text": views.OUTCOMES}


@router.get("/debates/{debate_id}", response_class=HTMLResponse)
async def debate_page(request: Request, debate_id: str, session: SessionDep,
                      store: StoreDep) -> Response:
    """One debate: a round x agent grid (streamed while it runs), the votes, the outcome,
    feedback, and what each training run made of each response."""
    context = await store.call(_detail, debate_id=parse_id(debate_id),
                               owner=session.principal.owner)
    return render(request, "debate.html", session, **context)


@router.get("/debates/{debate_id}/events")
async def debate_stream(request: Request, debate_id: str, session: SessionDep,
                        store: StoreDep) -> StreamingResponse:
    """The debate's rounds as server-sent events while it runs (then its outcome)."""
    def render_fragment(name: str, context: dict[str, Any]) -> str:
        return fragment(name, session, outcome_text=views.OUTCOMES, streamed=True, **context)

    events = debate_events(request, store, _hub(request), parse_id(debate_id), render_fragment,
                           owner=session.principal.owner)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/debates/{debate_id}/feedback")
async def feedback(debate_id: str, session: PostDep, store: StoreDep,
                   correct_answer: Annotated[str, Form(min_length=1, max_length=200)],
                   note: Annotated[str | None, Form(max_length=2000)] = None) -> Response:
    """Store the correct answer (as POST /v1/debates/{id}/feedback does)."""
    await operations.record_feedback(store, debate_id=parse_id(debate_id),
                                     correct_answer=correct_answer, note=note or None,
                                     api_key_id=session.principal.key_id,
                                     owner=session.principal.owner)
    return RedirectResponse(f"{PREFIX}/debates/{debate_id}#feedback", status_code=303)
