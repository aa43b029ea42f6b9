"""Typed dependencies and parameters of the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from brain.api_models import ID_PATTERN, PLATFORM_PATTERN
from brain.service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

# ids in paths and queries match their pattern as a whole string (a trailing newline included)
PlatformPath = Annotated[str, Path(pattern=PLATFORM_PATTERN, examples=["telegram"])]
UserIdPath = Annotated[str, Path(pattern=ID_PATTERN, examples=["123456"])]
ChatIdPath = Annotated[str, Path(pattern=ID_PATTERN, examples=["123456"])]
PersonaNamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$", examples=["pirate"])]
ChatIdQuery = Annotated[str, Query(pattern=ID_PATTERN, description="the chat, for a group chat's persona")]
