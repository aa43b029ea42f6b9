"""Every error the API returns is JSON {"error": {"code", "message"}} with a sentence a person can read (on
/metrics, whose answers are Prometheus's plain text, the sentence alone, as text/plain).

An error inside a stream that has already started is sent as a last event of the stream instead
(see brain/service/streaming.py), built from the same ``ApiError``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from brain.api_models import ErrorBody, ErrorDetail

log = logging.getLogger("brain")

STORAGE_DOWN = "The brain's storage (Redis) is unavailable right now; nothing was stored. Please retry shortly."
INTERNAL = "The brain failed while answering this request; nothing was stored, and the error has been logged."
# what any route may answer besides its own codes: a body too large or too slow, invalid input, a failure,
# and storage or capacity trouble
COMMON_STATUSES = (408, 413, 422, 500, 503)
# routes whose answers, errors included, are plain text (Prometheus's exposition format)
PLAIN_TEXT_PATHS = frozenset({"/metrics"})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def responses(*statuses: int, authorized: bool = True) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that may answer ``statuses`` besides the common ones."""
    codes = set(statuses) | set(COMMON_STATUSES) | ({401} if authorized else set())
    return {code: {"model": ErrorBody} for code in sorted(codes)}


def as_api_error(error: BaseException) -> ApiError:
    """The ApiError that tells a client what went wrong, for any error raised while serving a request."""
    # the engines import torch; errors.py must stay light
    from brain.engine.batching import EngineError
    from brain.engine.remote import RemoteEngineError

    if isinstance(error, ApiError):
        return error
    if isinstance(error, RedisConnectionError | RedisTimeoutError | ConnectionRefusedError):
        return ApiError(503, "storage_unavailable", STORAGE_DOWN, {"Retry-After": "2"})
    if isinstance(error, RemoteEngineError):
        return ApiError(503, "engine_unavailable", str(error), {"Retry-After": "2"})
    if isinstance(error, EngineError):
        log.error("generation failed: %s", error, exc_info=error)
        return ApiError(500, "generation_failed", f"Generating the reply failed ({error}); nothing was stored.")
    log.error("request failed: %s", error, exc_info=error)
    return ApiError(500, "internal_error", INTERNAL)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _describe(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "The request is not valid: " + "; ".join(problems[:5])


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        if request.url.path in PLAIN_TEXT_PATHS:  # Prometheus's scrapers read text: the 401 of a missing key
            return PlainTextResponse(exc.message + "\n", status_code=exc.status, headers=exc.headers)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not parse the body at all (not UTF-8, not JSON)
            return error_response(422, "invalid_request", "The request body is not valid JSON in UTF-8.")
        messages = {404: "There is no such endpoint.", 405: "That method is not allowed here."}
        # a 405 says which methods are allowed (Allow, RFC 9110), whatever method was refused (TRACE included)
        text = messages.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, "http_error", text, getattr(exc, "headers", None))

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return error_response(422, "invalid_request", "The request is nested too deeply to be read.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = as_api_error(exc)
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    @app.exception_handler(ConnectionRefusedError)
    async def _storage_down(request: Request, exc: Exception) -> JSONResponse:
        request.app.state.runtime.metrics.redis_errors.inc()
        return error_response(503, "storage_unavailable", STORAGE_DOWN, {"Retry-After": "2"})
