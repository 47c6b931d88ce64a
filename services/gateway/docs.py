"""The API docs page, served with a vendored Swagger UI: /docs works offline (no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_UI = "/static/vendor/swagger-ui-5.35.0"  # swagger-ui-dist from npm, Apache-2.0


ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
# Every operation may answer these (errors.py, guard.py, admission, rate limits).
COMMON_ERRORS = {"413": "Request body too large", "422": "Invalid request",
                 "429": "Rate limit exceeded (see Retry-After)",
                 "431": "Request headers too large"}


def _document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses as the gateway sends them: {"error": {...}}, never FastAPI's
    {"detail": [...]} (its default 422 schema), on every operation."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for code, description in COMMON_ERRORS.items():
                responses[code] = {"description": description,
                                   "content": {"application/json": {"schema": ERROR_REF}}}
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Mount the static files, serve /docs from them, document the error bodies."""
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API docs",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png")
