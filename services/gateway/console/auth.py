"""Console sessions: an HMAC-signed cookie holding the API key's id, an expiry and a CSRF token.

Only the key id is stored, so every request re-checks that the key still exists and is not
revoked. The cookie is HttpOnly and SameSite=Strict (Secure behind https, a setting); every POST
must also carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from maft import apikeys
from maft.db import crud
from services.gateway.deps import ANONYMOUS, Principal, SettingsDep, StoreDep
from services.gateway.settings import GatewaySettings

COOKIE = "maft_console"
LOGIN_COOKIE = "maft_console_login"  # the sign-in form's CSRF token, before any session
LOGIN_FORM_S = 3600


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in form, fragments answer 401."""


class Signer:
    """Signs and verifies small JSON payloads with HMAC-SHA256; each carries its expiry."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def _mac(self, body: bytes) -> str:
        digest = hmac.new(self.secret, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dumps(self, payload: dict[str, Any], ttl_s: float) -> str:
        """A signed token of `payload` valid for `ttl_s` seconds."""
        data = json.dumps({**payload, "exp": int(time.time() + ttl_s)}, separators=(",", ":"))
        body = base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")
        return f"{body}.{self._mac(body.encode())}"

    def loads(self, token: str | None) -> dict[str, Any] | None:
        """The payload of a genuine, unexpired token, else None."""
        body, _, mac = (token or "").partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        expired = not isinstance(payload, dict) or payload.get("exp", 0) < time.time()
        return None if expired else payload


def load_secret(settings: GatewaySettings) -> bytes:
    """The signing key: the setting, else `home/console-secret`, created once (0600), so that
    sessions survive a restart of the embedded default."""
    if settings.console_secret is not None:
        return settings.console_secret.get_secret_value().encode()
    path = Path(settings.home) / "console-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # written before, or by another gateway process just now
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in console user."""

    principal: Principal
    csrf: str
    sid: str

    @property
    def admin(self) -> bool:
        """Whether the key may see and act on training and societies."""
        return apikeys.grants(list(self.principal.scopes), "admin")


class Sessions:
    """Issues and reads session cookies; remembers this process's signed-out sessions."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.signer = Signer(load_secret(settings))
        self.ttl_s = settings.console_session_hours * 3600
        self.secure = settings.console_secure_cookie
        self.signed_out: dict[str, float] = {}  # sid -> expiry

    def issue(self, key_id: uuid.UUID | None) -> str:
        """A new session cookie value for a key (None: auth disabled)."""
        payload = {"k": str(key_id) if key_id else None, "csrf": secrets.token_urlsafe(24),
                   "sid": secrets.token_urlsafe(12)}
        return self.signer.dumps(payload, self.ttl_s)

    def read(self, token: str | None) -> dict[str, Any] | None:
        """A session's payload, unless forged, expired or signed out."""
        payload = self.signer.loads(token)
        if payload is None or payload.get("sid") in self.signed_out:
            return None
        return payload

    def sign_out(self, payload: dict[str, Any]) -> None:
        """Refuse this session from now on (in this process; the cookie is also deleted)."""
        now = time.time()
        self.signed_out = {s: e for s, e in self.signed_out.items() if e > now}
        self.signed_out[str(payload.get("sid"))] = float(payload.get("exp", now))

    def cookie_args(self) -> dict[str, Any]:
        """Attributes of the session cookie."""
        return {"httponly": True, "samesite": "strict", "secure": self.secure, "path": "/",
                "max_age": int(self.ttl_s)}


def sessions_of(request: Request) -> Sessions:
    """The app's session manager."""
    return request.app.state.console_sessions


async def _principal(payload: dict[str, Any], settings: GatewaySettings, store: Any
                     ) -> Principal | None:
    if payload.get("k") is None:
        return ANONYMOUS if settings.auth_disabled else None
    key = await store.call(crud.live_api_key, key_id=uuid.UUID(payload["k"]))
    return Principal(key.id, key.name, tuple(key.scopes)) if key is not None else None


async def current_session(request: Request, settings: SettingsDep, store: StoreDep
                          ) -> ConsoleSession:
    """The signed-in user; SignInRequired if the cookie is missing, forged, expired, signed
    out, or its key was revoked since."""
    payload = sessions_of(request).read(request.cookies.get(COOKIE))
    principal = await _principal(payload, settings, store) if payload else None
    if payload is None or principal is None:
        raise SignInRequired
    session = ConsoleSession(principal, str(payload["csrf"]), str(payload["sid"]))
    request.state.console_session = session  # for error pages
    return session


SessionDep = Annotated[ConsoleSession, Depends(current_session)]


async def admin_session(session: SessionDep) -> ConsoleSession:
    """A signed-in user whose key holds the admin scope (403 otherwise)."""
    if not session.admin:
        raise HTTPException(403, "this page needs an admin API key")
    return session


AdminSessionDep = Annotated[ConsoleSession, Depends(admin_session)]


async def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get("X-CSRF-Token")
    if sent is None:
        sent = str((await request.form()).get("csrf_token", ""))
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")


async def posted(request: Request, session: SessionDep) -> ConsoleSession:
    """A POST from a signed-in user carrying the session's CSRF token."""
    await _check_csrf(request, session.csrf)
    return session


async def admin_posted(request: Request, session: AdminSessionDep) -> ConsoleSession:
    """A POST from an admin carrying the session's CSRF token."""
    await _check_csrf(request, session.csrf)
    return session


PostDep = Annotated[ConsoleSession, Depends(posted)]
AdminPostDep = Annotated[ConsoleSession, Depends(admin_posted)]


async def login_posted(request: Request) -> None:
    """The sign-in form's CSRF check: its token must match the short-lived login cookie."""
    payload = sessions_of(request).signer.loads(request.cookies.get(LOGIN_COOKIE))
    await _check_csrf(request, str(payload.get("csrf", "")) if payload else "")
