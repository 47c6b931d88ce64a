"""Console: sign in with an API key, sign out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from maft.db import crud
from services.gateway.console.auth import (
    COOKIE,
    LOGIN_COOKIE,
    LOGIN_FORM_S,
    PostDep,
    login_posted,
    sessions_of,
)
from services.gateway.console.pages import PREFIX, render
from services.gateway.deps import SettingsDep, StoreDep

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if target and target.startswith(f"{PREFIX}") and not target.startswith("//"):
        return target
    return PREFIX


def _form(request: Request, *, status: int = 200, error: str | None = None,
          next_url: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, status=status, error=error, csrf=token,
                      next_url=_safe_next(next_url),
                      no_keys=request.app.state.settings.auth_disabled)
    response.set_cookie(LOGIN_COOKIE, sessions_of(request).signer.dumps(
        {"csrf": token}, LOGIN_FORM_S), max_age=LOGIN_FORM_S, path=f"{PREFIX}/login",
        httponly=True, samesite="strict", secure=sessions_of(request).secure)
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    """The sign-in form."""
    return _form(request, next_url=next)


@router.post("/login", dependencies=[Depends(login_posted)])
async def login(request: Request, settings: SettingsDep, store: StoreDep,
                api_key: Annotated[str, Form()] = "",
                next_url: Annotated[str, Form(alias="next")] = PREFIX) -> Response:
    """Check the key; on success set the session cookie and go where the user was headed."""
    key = await store.call(crud.authenticate, plaintext=api_key.strip()) if api_key else None
    if key is None and not settings.auth_disabled:
        return _form(request, status=401, error="Unknown or revoked API key.",
                     next_url=next_url)
    sessions = sessions_of(request)
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    response.set_cookie(COOKIE, sessions.issue(key.id if key else None),
                        **sessions.cookie_args())
    response.delete_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
    return response


@router.post("/logout")
async def logout(request: Request, _: PostDep) -> Response:
    """End the session: the cookie is deleted and its token refused from now on."""
    sessions = sessions_of(request)
    payload = sessions.read(request.cookies.get(COOKIE))
    if payload is not None:
        sessions.sign_out(payload)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
