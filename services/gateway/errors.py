"""Domain errors -> HTTP. The only place that knows both.

Unexpected exceptions are not handled here: a handler for `Exception` runs in Starlette's
outermost middleware, which re-raises after answering, and uvicorn then closes the keep-alive
connection. services/gateway/guard.py answers them instead.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from maft.exceptions import (
    AdapterNotFoundError,
    ConflictError,
    DebateFailedError,
    InferenceError,
    InferenceTimeoutError,
    InvalidRequestError,
    InvalidTaskOptionError,
    MaftError,
    NotFoundError,
    OverloadedError,
    QueueUnavailableError,
    RateLimitedError,
    SocietyError,
    SocietyTooSmallError,
    UnknownTaskError,
)
from services.gateway.admission import ClientGoneError

log = logging.getLogger(__name__)


def error_response(status: int, message: str, kind: str, *, param: str | None = None,
                   debate_id: object = None, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    """An OpenAI-style error body."""
    body: dict[str, object] = {"message": message, "type": kind, "param": param, "code": status}
    if debate_id is not None:
        body["debate_id"] = str(debate_id)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _location(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where, msg = _location(tuple(err.get("loc", ()))), err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
        problems.append(f"{where}: {msg}")
    first = exc.errors()[0] if exc.errors() else {}
    return error_response(422, "; ".join(problems), "invalid_request_error",
                          param=_location(tuple(first.get("loc", ()))))


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
        exc.status_code, "invalid_request_error")
    return error_response(exc.status_code, str(exc.detail), kind,
                          headers=getattr(exc, "headers", None))


def inference_status(exc: InferenceError) -> tuple[int, str]:
    """HTTP status and error type for an inference failure."""
    if exc.status_code == 400:  # vLLM refused the request itself (e.g. context exceeded)
        return 422, "invalid_request_error"
    if isinstance(exc, InferenceTimeoutError):
        return 504, "inference_timeout"
    if isinstance(exc, AdapterNotFoundError):
        return 503, "adapter_unavailable"
    return 503, "inference_unavailable"


def _retry(exc: OverloadedError | RateLimitedError) -> JSONResponse:
    status, kind = (503, "overloaded") if isinstance(exc, OverloadedError) else (
        429, "rate_limit_exceeded")
    return error_response(status, str(exc), kind, headers={"Retry-After": str(exc.retry_after)})


def _domain(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DebateFailedError):
        status, kind = inference_status(exc.cause)
        return error_response(status, f"debate failed: {exc}", kind, debate_id=exc.debate_id)
    if isinstance(exc, InferenceError):
        status, kind = inference_status(exc)
        return error_response(status, str(exc), kind)
    if isinstance(exc, OverloadedError | RateLimitedError):
        return _retry(exc)
    if isinstance(exc, NotFoundError):
        return error_response(404, str(exc), "not_found_error")
    if isinstance(exc, UnknownTaskError | InvalidTaskOptionError | InvalidRequestError):
        return error_response(422, str(exc), "invalid_request_error")
    if isinstance(exc, QueueUnavailableError):
        return error_response(503, str(exc), "queue_unavailable")
    if isinstance(exc, ConflictError):
        return error_response(409, str(exc), "conflict_error")
    if isinstance(exc, SocietyError):
        status = 422 if isinstance(exc, SocietyTooSmallError) else 503
        return error_response(status, str(exc), "society_error")
    log.exception("unmapped domain error", exc_info=exc)
    return error_response(500, str(exc), "internal_error")


def _data(_: Request, exc: Exception) -> JSONResponse:
    # The inputs are validated against the columns; this is the net under that validation.
    log.warning("the database refused a value: %s", exc)
    return error_response(422, "a value cannot be stored (out of range, too long or with a "
                          "NUL character)", "invalid_request_error")


def _gone(_: Request, exc: Exception) -> Response:
    return Response(status_code=499)  # nginx's "client closed request": nobody reads it


def install(app: FastAPI) -> None:
    """Register every handler on `app`."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(MaftError, _domain)
    app.add_exception_handler(DataError, _data)
    app.add_exception_handler(ClientGoneError, _gone)
