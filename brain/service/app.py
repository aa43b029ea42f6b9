"""The brain's FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from redis.exceptions import RedisError

from brain import log_privacy
from brain.service import errors
from brain.service.auth import Authorized
from brain.service.body_limits import BodyLimits
from brain.service.routes import chat, compare, facts, feedback, health, openai_compat, personas, users
from brain.service.runtime import Runtime
from brain.service.server import RequestCap, request_cap
from brain.settings import Settings

log = logging.getLogger("brain.app")


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The app; the model and Redis are opened at start-up unless a runtime is given."""
    log_privacy.install()  # logs at INFO name no member

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.create(settings)
        app.state.runtime = rt
        try:
            await rt.store.ids.load()
            if await rt.store.persistence.forgotten_since_rewrite():  # a rewrite was due when the last brain stopped
                rt.rewrite_after_forget()
        except (RedisError, OSError) as error:  # Redis is down: the store loads the key on its first use instead
            log.warning("the id key could not be read from Redis yet: %s", error)
        rt.start()
        try:
            yield
        finally:
            await rt.stop()

    # the OpenAPI document and the docs page are served below, behind the API key unless brain.public_docs
    app = FastAPI(
        title="ownchat brain", version="0.1.0", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None
    )
    errors.install(app)
    for module in (health, chat, feedback, compare, personas, users, facts, openai_compat):
        app.include_router(module.router)
    app.include_router(_docs_router(app, public=settings.brain.public_docs))
    if settings.secrets.operator_key is not None:  # the operator's dashboard is off without its own key
        from brain.dashboard.router import router as dashboard

        app.include_router(dashboard)
    limits = settings.limits
    app.add_middleware(BodyLimits, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    # outermost: a request beyond the cap is refused before its body is read (health checks are always answered)
    app.add_middleware(RequestCap, limit=request_cap(limits))
    return app


def _docs_router(app: FastAPI, *, public: bool) -> APIRouter:
    router = APIRouter(dependencies=[] if public else [Authorized], include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ownchat brain")

    return router
