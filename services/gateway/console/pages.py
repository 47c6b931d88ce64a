"""Rendering: the Jinja2 templates, their filters, and HTML error pages under /console."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from maft.exceptions import MaftError
from services.gateway.console.auth import COOKIE, ConsoleSession, SignInRequired, sessions_of

PREFIX = "/console"
HTMX = "/static/vendor/htmx-2.0.8/htmx.min.js"  # htmx.org 2.0.8 from npm, 0BSD
HTMX_SSE = "/static/vendor/htmx-ext-sse-2.2.4/sse.js"  # htmx-ext-sse 2.2.4 from npm, 0BSD
DASH = "–"


def dash(value: object, digits: int = 3) -> str:
    """A number rounded, any other value as text, and "–" for nothing."""
    if value is None or value == "":
        return DASH
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def when(value: datetime | None) -> str:
    """A timestamp to the second, UTC."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else DASH


def duration(seconds: float | None) -> str:
    """Seconds as "1 h 2 min", "3 min 4 s" or "5 s"."""
    if seconds is None:
        return DASH
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def filled(form: dict[str, Any]) -> dict[str, Any]:
    """A posted form's non-blank text fields, trimmed, without the CSRF token."""
    values = {k: v.strip() for k, v in form.items() if isinstance(v, str) and v.strip()}
    values.pop("csrf_token", None)
    return values


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
    templates.env.filters.update(dash=dash, when=when, duration=duration,
                                 pct=lambda v: DASH if v is None else f"{100 * v:.1f}%")
    templates.env.globals.update(htmx=HTMX, htmx_sse=HTMX_SSE, prefix=PREFIX)
    return templates


TEMPLATES = _templates()


def render(request: Request, name: str, session: ConsoleSession | None, *, status: int = 200,
           **context: Any) -> HTMLResponse:
    """A page or fragment, with the session (for the nav and CSRF tokens) in its context."""
    return TEMPLATES.TemplateResponse(request, name, {"session": session, **context},
                                      status_code=status)


def fragment(name: str, session: ConsoleSession | None, **context: Any) -> str:
    """A template rendered to a string (SSE events)."""
    return TEMPLATES.get_template(name).render(session=session, **context)


def _sign_in(request: Request, _: Exception) -> Response:
    wants_page = request.method == "GET" and "HX-Request" not in request.headers and \
        "text/event-stream" not in request.headers.get("accept", "")
    if wants_page:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        response: Response = RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
    else:
        response = render(request, "error.html", None, status=401,
                          message="Your session ended: sign in again.")
    response.delete_cookie(COOKIE, path="/")
    return response


async def _html_or_json(api: Callable[..., Any], request: Request, exc: Exception) -> Response:
    """The API's error response, rendered as a page under /console (same status, same text)."""
    response = api(request, exc)
    if inspect.isawaitable(response):
        response = await response
    if not request.url.path.startswith(PREFIX):
        return response
    message = json.loads(bytes(response.body))["error"]["message"]
    session = getattr(request.state, "console_session", None)
    return render(request, "error.html", session, status=response.status_code, message=message)


def install_errors(app: FastAPI) -> None:
    """Console errors as pages; the API's handlers decide status and text (errors.install must
    have run first)."""
    app.add_exception_handler(SignInRequired, _sign_in)
    for cls in (StarletteHTTPException, MaftError, RequestValidationError):
        app.add_exception_handler(cls, partial(_html_or_json, app.exception_handlers[cls]))


__all__ = ["PREFIX", "TEMPLATES", "fragment", "install_errors", "render", "sessions_of"]
