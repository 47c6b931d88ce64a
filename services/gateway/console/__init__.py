"""The web console under /console: server-rendered pages, a vendored htmx, no CDN."""

from __future__ import annotations

from fastapi import FastAPI

from services.gateway.console import (
    routes_auth,
    routes_debates,
    routes_societies,
    routes_training,
)
from services.gateway.console.auth import Sessions
from services.gateway.console.pages import install_errors
from services.gateway.console.stream import Hub
from services.gateway.settings import GatewaySettings


def install(app: FastAPI, settings: GatewaySettings) -> None:
    """Mount the console's pages (after errors.install: its error pages reuse those handlers)."""
    app.state.console_sessions = Sessions(settings)
    app.state.console_hub = Hub()
    for module in (routes_auth, routes_debates, routes_societies, routes_training):
        app.include_router(module.router)
    install_errors(app)
