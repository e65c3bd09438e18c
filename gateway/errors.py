"""One error shape for the whole API: ``{"error": {"code": ..., "message": ...}}``.

Every failure, ours or the framework's (validation, unknown route, wrong method, crash),
leaves the gateway in this shape so clients only ever parse one thing.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TypeVar

import asyncpg
import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)
T = TypeVar("T")

# Status codes the framework raises on its own, and the machine-readable code for each.
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_request",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise from a handler to answer with the error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def unauthorized(message: str = "missing or wrong API key") -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_request", message)


def bounded_body(body: bytes, limit: int) -> bytes:
    """``body``, or ``invalid_request`` when it is over ``limit`` bytes."""
    if len(body) > limit:
        raise invalid(f"request body is larger than {limit} bytes")
    return body


def decoded_body(body: bytes, kind: type[T], *, empty: T | None = None) -> T:
    """A JSON request body as ``kind`` (a msgspec Struct), or ``invalid_request`` saying what is
    wrong with it; an empty body is ``empty`` when given, else refused."""
    if not body.strip():
        if empty is not None:
            return empty
        raise invalid("request body must be a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise invalid(f"invalid JSON: {exc}") from None


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code)
        if code is None:
            code = "error" if exc.status_code >= 400 else "ok"
        try:
            default = HTTPStatus(exc.status_code).phrase
        except ValueError:
            default = "error"
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else default
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(asyncpg.exceptions.DataError)
    async def _unstorable(request: Request, exc: asyncpg.exceptions.DataError) -> JSONResponse:
        # SQLSTATE class 22: a value from the request Postgres cannot take (a NUL in text, a
        # date or number out of its range). The client's input, not a crash.
        log.info("%s %s: value refused by Postgres: %s", request.method, request.url.path, type(exc).__name__)
        return error_response(422, "invalid_request", "a value in the request cannot be stored or compared "
                                                      "(a NUL character, or a date or number out of range)")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal server error")
