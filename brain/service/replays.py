"""A chat request asked again with its idempotency key is answered with the reply that was kept for it.

A bot asks again whenever it does not know what became of a request (the connection dropped, a proxy answered 502,
a stream broke off before its end), so the brain may have stored the turn already, or still be generating it. Then
the member must see that reply, with its turn id (so it can be rated): a finished one is streamed again from the
store, one still being generated on this replica is joined, and only a request the brain never finished is
generated anew (a second replica's generation in progress is caught when it stores: see routes/chat.py).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from brain.api_models import ChatReply, ChatRequest
from brain.service.errors import ApiError
from brain.service.runtime import Runtime
from brain.service.streaming import EVENT_STREAM

Item = str | ChatReply


class Flight:
    """One generation in progress: what it yielded so far, for the requests that join it."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.ended = False
        self._changed = asyncio.Condition()

    async def add(self, item: Item) -> None:
        async with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    async def end(self) -> None:
        async with self._changed:
            self.ended = True
            self._changed.notify_all()

    async def follow(self) -> AsyncIterator[Item]:
        """Everything the generation yielded, from its first delta on, until it ends."""
        index = 0
        while True:
            async with self._changed:
                while len(self.items) <= index and not self.ended:
                    await self._changed.wait()
                fresh, index = self.items[index:], len(self.items)
                ended = self.ended
            for item in fresh:
                yield item
            if ended and index == len(self.items):
                return


# per brain (a test process may run several), the generations in progress by (member, idempotency key)
_flights: weakref.WeakKeyDictionary[Runtime, dict[tuple[str, str], Flight]] = weakref.WeakKeyDictionary()


def _in_flight(runtime: Runtime) -> dict[tuple[str, str], Flight]:
    return _flights.setdefault(runtime, {})


async def carried(runtime: Runtime, body: ChatRequest, items: AsyncIterator[Item]) -> AsyncIterator[Item]:
    """`items` as they come, shared with any request that asks again with the same key meanwhile."""
    if not body.request_id:
        async for item in items:
            yield item
        return
    key = (body.key, body.request_id)
    flight = Flight()
    flights = _in_flight(runtime)
    flights[key] = flight
    try:
        async for item in items:
            await flight.add(item)
            yield item
    finally:
        await flight.end()
        if flights.get(key) is flight:
            del flights[key]


async def answered_before(runtime: Runtime, body: ChatRequest) -> AsyncIterator[Item] | None:
    """The reply to a request asked before with this key (kept, or still being generated here); None when there
    is none and the request is to be answered as new."""
    if not body.request_id:
        return None
    kept = await kept_reply(runtime, body)
    if kept is not None:
        return _again(kept)
    flight = _in_flight(runtime).get((body.key, body.request_id))
    if flight is not None:
        return _joined(runtime, body, flight)
    return None


async def kept_reply(runtime: Runtime, body: ChatRequest) -> ChatReply | None:
    raw = await runtime.store.idempotency.kept_reply(body.key, body.request_id) if body.request_id else None
    return ChatReply.model_validate_json(raw) if raw else None


async def keep(runtime: Runtime, body: ChatRequest, reply: ChatReply) -> None:
    """Keep a stored turn's reply for its key, so that the request asked again is answered with it."""
    if body.request_id and reply.turn_id is not None:
        await runtime.store.idempotency.keep_reply(
            body.key, body.request_id, reply.model_dump_json(), runtime.settings.memory.ttl_s
        )


def answer_again(lines: AsyncIterator[str]) -> StreamingResponse:
    """A repeated request's event stream: no generation slot is taken, nothing is generated."""
    return StreamingResponse(lines, media_type=EVENT_STREAM, headers={"Cache-Control": "no-cache"})


async def _again(reply: ChatReply) -> AsyncIterator[Item]:
    yield reply.reply
    yield reply


async def _joined(runtime: Runtime, body: ChatRequest, flight: Flight) -> AsyncIterator[Item]:
    async for item in flight.follow():
        yield item
        if isinstance(item, ChatReply):
            return
    # the generation was cancelled (its client went away) or failed; it may have been kept meanwhile elsewhere
    kept = await kept_reply(runtime, body)
    if kept is None:
        raise ApiError(503, "cancelled", "The reply was cancelled before it finished; nothing was stored.")
    yield kept  # its words came already, as far as they went: the last event carries the whole reply
