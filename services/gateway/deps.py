"""FastAPI dependencies, as Annotated aliases. Long-lived objects live on app.state."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from maft import apikeys
from maft.db import crud
from maft.inference_client import InferenceClient
from services.gateway.admission import Admission
from services.gateway.debates import DebateService, Store
from services.gateway.ratelimit import RateLimiter
from services.gateway.settings import GatewaySettings
from services.gateway.training_queue import TrainingQueue


def _settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


def _store(request: Request) -> Store:
    return request.app.state.store


def _debates(request: Request) -> DebateService:
    return request.app.state.debates


def _inference(request: Request) -> InferenceClient:
    return request.app.state.inference


def _training_queue(request: Request) -> TrainingQueue:
    return request.app.state.training_queue


def _admission(request: Request) -> Admission:
    return request.app.state.admission


def _limiter(request: Request) -> RateLimiter:
    return request.app.state.limiter


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
DebateServiceDep = Annotated[DebateService, Depends(_debates)]
InferenceDep = Annotated[InferenceClient, Depends(_inference)]
TrainingQueueDep = Annotated[TrainingQueue, Depends(_training_queue)]
AdmissionDep = Annotated[Admission, Depends(_admission)]
LimiterDep = Annotated[RateLimiter, Depends(_limiter)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `maft keys create`.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key (or the anonymous admin when auth is disabled)."""

    key_id: uuid.UUID | None
    name: str
    scopes: tuple[str, ...]

    @property
    def sees_all(self) -> bool:
        """Admins and trusted labellers read and label every team's debates."""
        return self.key_id is None or apikeys.grants(list(self.scopes), "label")

    @property
    def owner(self) -> uuid.UUID | None:
        """The key whose debates this caller may see, or None for all of them."""
        return None if self.sees_all else self.key_id


ANONYMOUS = Principal(None, "anonymous (auth disabled)", apikeys.SCOPES)


async def _principal(settings: SettingsDep, store: StoreDep,
                     credentials: Annotated[HTTPAuthorizationCredentials | None,
                                            Depends(_bearer)]) -> Principal:
    if settings.auth_disabled:
        return ANONYMOUS
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>`",
                            headers=challenge)
    key = await store.call(crud.authenticate, plaintext=credentials.credentials)
    if key is None:
        raise HTTPException(401, "invalid or revoked API key", headers=challenge)
    return Principal(key.id, key.name, tuple(key.scopes))


def require(scope: str):
    """A dependency that admits keys holding `scope` (admin holds every scope)."""

    async def check(principal: Annotated[Principal, Depends(_principal)], settings: SettingsDep,
                    limiter: LimiterDep) -> Principal:
        if not apikeys.grants(list(principal.scopes), scope):
            raise HTTPException(403, f"this API key lacks the '{scope}' scope")
        if principal.key_id is not None:  # auth disabled: no keys to count by
            await limiter.hit("requests", str(principal.key_id), settings.rate_limit_per_minute)
        return principal

    return check


QueryPrincipal = Annotated[Principal, Depends(require("query"))]
AdminPrincipal = Annotated[Principal, Depends(require("admin"))]
