"""What the generating routes share: server-sent event streams that end in an ``error`` event rather than a
silent cut, the release of the admission slot when a stream ends however it ends, and the cancellation of
a non-streaming generation whose client went away."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from brain.api_models import ErrorBody, ErrorDetail
from brain.service.admission import Slot
from brain.service.errors import ApiError, as_api_error

T = TypeVar("T")
EVENT_STREAM = "text/event-stream"


def stream_responses(description: str, events: list[str]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of a 200 answer that may also come as an event stream of the named events, each
    with JSON data (in OpenAPI 3.1, the schema of an event stream describes one event)."""
    event = {
        "type": "object",
        "properties": {
            "event": {"type": "string", "enum": events},
            "data": {"type": "string", "contentMediaType": "application/json"},
        },
        "required": ["data"],
    }
    return {200: {"description": description, "content": {EVENT_STREAM: {"schema": event}}}}


def error_json(error: BaseException) -> str:
    api_error = as_api_error(error)
    return ErrorBody(error=ErrorDetail(code=api_error.code, message=api_error.message)).model_dump_json()


async def events_or_error(lines: AsyncIterator[str], error_line: Any) -> AsyncIterator[str]:
    """``lines``, then, if producing them failed, ``error_line(json)`` as the stream's last event."""
    try:
        async for line in lines:
            yield line
    except Exception as error:  # the stream has started: the only way left to say what went wrong
        yield error_line(error_json(error))


class EventStream(StreamingResponse):
    """A server-sent event stream that gives its admission slot back when it ends, however it ends."""

    def __init__(self, lines: AsyncIterator[str], slot: Slot) -> None:
        super().__init__(lines, media_type=EVENT_STREAM, headers={"Cache-Control": "no-cache"})
        self.slot = slot.hand_over()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
            # a stream cut off by a client that left still holds its generator: close it, which cancels the request
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result; if the client goes away first, ``work`` is cancelled (its generation too)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ApiError(503, "cancelled", "The client went away; the reply was cancelled and nothing was stored.")
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


def json_line(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"
