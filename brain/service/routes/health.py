"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from brain.service.auth import Authorized
from brain.service.deps import RuntimeDep
from brain.service.errors import error_response, responses

router = APIRouter(tags=["health"], responses=responses(authorized=False))


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(runtime: RuntimeDep) -> dict[str, str] | Response:
    """The model is loaded and Redis answers."""
    try:
        await runtime.store.ping()
    except (RedisError, OSError):
        runtime.metrics.redis_errors.inc()
        return error_response(503, "not_ready", "Redis is not reachable.")
    if not runtime.backend.running:
        return error_response(503, "not_ready", "The model engine is not running.")
    return {"status": "ready", "model": runtime.model_name}


PLAIN_ERROR = {"content": {"text/plain": {"schema": {"type": "string"}}}}


@router.get(
    "/metrics",
    dependencies=[Authorized],
    response_class=PlainTextResponse,
    responses={401: {**PLAIN_ERROR, "description": "no valid API key, said as text"}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
