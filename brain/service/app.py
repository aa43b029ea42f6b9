"""The brain's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from brain.service import errors
from brain.service.routes import chat, health, openai_compat, personas, users
from brain.service.runtime import Runtime
from brain.settings import Settings


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The app; the model and Redis are opened at start-up unless a runtime is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.create(settings)
        app.state.runtime = rt
        rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(title="ownchat brain", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    for module in (health, chat, personas, users, openai_compat):
        app.include_router(module.router)
    return app
