"""Console: the overview (what needs attention first), societies with lineage and charts,
activation and rollback with a confirmation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from maft.db import crud
from maft.db.models import utcnow
from maft.enums import DebateStatus, RunStatus
from maft.exceptions import ConflictError
from services.gateway import operations
from services.gateway.console import views
from services.gateway.console.auth import AdminPostDep, AdminSessionDep, SessionDep
from services.gateway.console.charts import Point, line_chart
from services.gateway.console.pages import PREFIX, render
from services.gateway.deps import InferenceDep, StoreDep

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _societies(db: Session) -> dict[str, Any]:
    active = crud.active_society(db).version
    runs = crud.list_runs(db, limit=200)
    rows = []
    for society in crud.list_societies(db):
        labels = None
        if society.training_run_id is not None:
            labels = views.label_accuracy(crud.run_labels(db, run_id=society.training_run_id))
        rows.append(views.society_view(society, active=active, runs=runs, labels=labels))
    return {"active": active, "societies": rows, "diversity": views.DIVERSITY}


def charts(rows: list[views.SocietyView]) -> list[Markup]:
    """Accuracy, then each diversity figure, per society version (oldest first)."""
    ordered = sorted(rows, key=lambda r: r.society.version)

    def href(row: views.SocietyView) -> str:
        return f"{PREFIX}/societies#v{row.society.version}"

    accuracy = [Point(f"v{r.society.version}", (r.accuracy or {}).get("accuracy"),
                      (r.accuracy or {}).get("stderr"), href(r)) for r in ordered]
    out = [line_chart("Accuracy per society version", accuracy, y_max=1.0)]
    for key, title in views.DIVERSITY:
        points = [Point(f"v{r.society.version}", r.diversity.get(key), None, href(r))
                  for r in ordered]
        if any(p.value is not None for p in points):
            out.append(line_chart(f"{title} per society version", points))
    return out


def _overview(db: Session, *, admin: bool, owner: uuid.UUID | None) -> dict[str, Any]:
    day = crud.DebateFilter(status=DebateStatus.FAILED, since=utcnow() - timedelta(days=1))
    failed, _ = crud.list_debates(db, where=day, limit=10, owner=owner)
    recent, _ = crud.list_debates(db, limit=10, owner=owner)
    context: dict[str, Any] = {"failed_debates": failed, "recent": recent}
    if admin:
        context.update(_societies(db))
        runs = crud.list_runs(db, limit=20)
        context["failed_runs"] = [r for r in runs if r.status == RunStatus.FAILED][:5]
        context["live_runs"] = [r for r in runs if r.active_lock]
        context["regressions"] = [s for s in context["societies"]
                                  if s.regression or s.society.status == "rejected"]
    context["quiet"] = not any(context.get(k) for k in (
        "failed_debates", "failed_runs", "live_runs", "regressions"))
    return context


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, session: SessionDep, store: StoreDep) -> Response:
    """Failures and regressions first, then recent debates and the charts."""
    context = await store.call(_overview, admin=session.admin, owner=session.principal.owner)
    if session.admin:
        context["charts"] = charts(context["societies"])
    return render(request, "overview.html", session, **context)


@router.get("/societies", response_class=HTMLResponse)
async def societies(request: Request, session: AdminSessionDep, store: StoreDep) -> Response:
    """Every society: lineage, gate scores and decision, diversity, label accuracy."""
    context = await store.call(_societies)
    return render(request, "societies.html", session, charts=charts(context["societies"]),
                  activated=request.query_params.get("activated"), **context)


def _confirm(db: Session, *, version: int) -> dict[str, Any]:
    society = crud.get_society(db, version=version)
    reason = operations.rejection(db, society) if society.status == "rejected" else None
    return {"society": society, "active": crud.active_society(db).version, "rejected": reason}


@router.get("/societies/{version}/activate", response_class=HTMLResponse)
async def confirm(request: Request, version: int, session: AdminSessionDep,
                  store: StoreDep) -> Response:
    """Ask for confirmation before switching the society that serves every debate."""
    return render(request, "activate.html", session, error=None,
                  **await store.call(_confirm, version=version))


@router.post("/societies/{version}/activate")
async def activate(request: Request, version: int, session: AdminPostDep, store: StoreDep,
                   inference: InferenceDep, force: bool = Form(False)) -> Response:
    """Activate (or roll back to) a society, as POST /v1/societies/{v}/activate does."""
    try:
        await operations.activate_society(store, inference, version=version, force=force,
                                          actor=f"{session.principal.name} (console)")
    except ConflictError as exc:
        return render(request, "activate.html", session, status=409, error=str(exc),
                      **await store.call(_confirm, version=version))
    return RedirectResponse(f"{PREFIX}/societies?activated={version}", status_code=303)
