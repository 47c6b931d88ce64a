"""The gateway app: created once per process, long-lived clients opened in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from maft import __version__
from maft.db import crud
from maft.db.session import make_engine, make_session_factory
from maft.inference_client import InferenceClient
from services.gateway import console, docs, errors
from services.gateway.admission import Admission
from services.gateway.debates import DebateService, Store
from services.gateway.guard import Guard
from services.gateway.metrics import instrument
from services.gateway.ratelimit import make_limiter
from services.gateway.routes import adapters, chat, debates, health, training
from services.gateway.settings import GatewaySettings, get_settings
from services.gateway.training_queue import TrainingQueue

log = logging.getLogger("maft.gateway")


def _open(app: FastAPI, settings: GatewaySettings) -> None:
    engine = make_engine(settings.db_url)
    store = Store(make_session_factory(engine))
    inference = InferenceClient(settings.inference_url, timeout=settings.inference_timeout_s,
                                api_key=settings.inference_key,
                                adapter_store=settings.adapter_dir)
    app.state.engine, app.state.store, app.state.inference = engine, store, inference
    app.state.admission = Admission.from_settings(settings)
    app.state.limiter = make_limiter(settings)
    app.state.debates = DebateService(store=store, backend=inference, settings=settings,
                                      admission=app.state.admission, counter=inference)
    app.state.training_queue = TrainingQueue(settings)
    app.state.jobs = set()  # streamed debates still running


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the DB engine and the inference client; record society v0 if missing."""
    settings: GatewaySettings = app.state.settings
    if settings.auth_disabled:
        log.warning("AUTH IS DISABLED (MAFT_AUTH_DISABLED=true): anyone can call every endpoint")
    _open(app, settings)
    try:
        await app.state.store.call(crud.ensure_base_society,
                                   base_model_name=settings.base_model_name)
        stale = datetime.now(UTC) - timedelta(seconds=settings.debate_timeout_s)
        await app.state.store.call(crud.fail_stale_debates, before=stale)
    except Exception as exc:  # the DB may come up later; /readyz reports it
        log.warning("could not record the base society yet: %s", exc)
    yield
    await app.state.inference.aclose()
    await app.state.limiter.counter.aclose()
    app.state.training_queue.close()
    app.state.engine.dispose()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the app; tests pass their own settings."""
    app = FastAPI(title="MAFT gateway", version=__version__, lifespan=lifespan,
                  description="Answers from a debate among finetuned agents (MAFT).",
                  docs_url=None, redoc_url=None)  # docs.install serves /docs without a CDN
    app.state.settings = settings or get_settings()
    errors.install(app)
    docs.install(app)
    for module in (health, debates, chat, adapters, training):
        app.include_router(module.router)
    console.install(app, app.state.settings)
    instrument(app)
    app.add_middleware(Guard, max_header_bytes=app.state.settings.max_header_bytes,
                       max_body_bytes=app.state.settings.max_body_bytes)  # outermost
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory services.gateway.main:app_factory`."""
    logging.basicConfig(level=logging.INFO)
    return create_app()
