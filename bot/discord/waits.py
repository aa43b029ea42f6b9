"""Waits Discord asks for, honoured by the adapter itself where a call is worth making anew after one.

discord.py keeps Discord's rate-limit buckets and, on a 429, sleeps `retry_after` and then sends the same request
again. For a streamed reply that is the wrong call to make after a wait: the text it carries is as old as the wait,
while newer text (often the whole reply) is ready. discord.py's own `max_ratelimit_timeout` raises instead of
waiting, but accepts nothing under 30 s and holds for every call of the bot. So a reply's calls go through
`ReplyLimits.make`, which reads Discord's answers through discord.py's documented `http_trace` option (an aiohttp
TraceConfig that sees every response the client receives):
- a 429 to a reply's call raises discord.RateLimited at once, before discord.py sleeps and sends it again;
- a reply's call whose bucket an earlier response said is used up (X-RateLimit-Remaining 0) raises as well,
  rather than waiting inside discord.py until the bucket resets.
The caller marks the channel as waiting in `ChannelWaits`; its reply is drawn anew, with the newest text, once the
wait is over, and no typing indicator goes to that channel meanwhile. Every other call keeps discord.py's own
handling; a bucket used up by such a call only (not by a reply's) still holds a reply's call inside discord.py.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TypeVar

import aiohttp
import discord

T = TypeVar("T")


class ReplyRoute(enum.Enum):
    """The REST routes a streamed reply calls; Discord meters each per channel, in the bucket its responses name."""

    SEND = "POST /channels/{channel_id}/messages"
    EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
    TYPING = "POST /channels/{channel_id}/typing"


@dataclass(frozen=True)
class _ReplyCall:
    limits: ReplyLimits
    channel_id: int
    route: ReplyRoute


# the reply call being made in this task, if any: the trace sees its request in the same task
_current: ContextVar[_ReplyCall | None] = ContextVar("discord_reply_call", default=None)


class ReplyLimits:
    """Discord's rate limits as a streamed reply's calls meet them; pass `trace` to the client as `http_trace`."""

    def __init__(self) -> None:
        self._bucket_of: dict[ReplyRoute, str] = {}  # Discord's bucket name for a route, once a response told it
        self._used_up_until: dict[tuple[str, int], float] = {}  # (bucket, channel) -> monotonic time it resets
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._on_response)

    async def make(self, channel_id: int, route: ReplyRoute, make_call: Callable[[], Awaitable[T]]) -> T:
        """Make one call of a reply; a wait Discord asks for (or would ask for) raises discord.RateLimited instead."""
        if (wait := self._used_up_until.get(self._key(channel_id, route), 0.0) - time.monotonic()) > 0:
            raise discord.RateLimited(wait)
        token = _current.set(_ReplyCall(self, channel_id, route))
        try:
            return await make_call()
        finally:
            _current.reset(token)

    def _key(self, channel_id: int, route: ReplyRoute) -> tuple[str, int]:
        return self._bucket_of.get(route, route.value), channel_id

    async def _on_response(
        self, session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        call = _current.get()
        if call is None or call.limits is not self:
            return
        response = params.response
        headers = response.headers
        if (bucket := headers.get("X-RateLimit-Bucket")) is not None:
            self._bucket_of[call.route] = bucket
        if response.status == 429:
            if headers.get("Via"):  # without it discord.py takes the 429 for Cloudflare's ban, and says so
                raise discord.RateLimited(await _retry_after(response))
            return
        remaining, reset_after = headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-Reset-After")
        if remaining is None or reset_after is None:
            return
        key = self._key(call.channel_id, call.route)
        if int(remaining) > 0:
            self._used_up_until.pop(key, None)
            return
        now = time.monotonic()
        if len(self._used_up_until) > 10_000:
            self._used_up_until = {k: t for k, t in self._used_up_until.items() if t > now}
        self._used_up_until[key] = now + float(reset_after)


async def _retry_after(response: aiohttp.ClientResponse) -> float:
    """The wait a 429 asks for: its body's `retry_after`, else its headers' (both in seconds)."""
    try:
        return float((await response.json(content_type=None))["retry_after"])
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return float(response.headers.get("X-RateLimit-Reset-After") or response.headers.get("Retry-After") or 1.0)


class ChannelWaits:
    """Per channel, the moment before which nothing goes there: Discord asked the bot to wait until then."""

    def __init__(self) -> None:
        self._until: dict[int, float] = {}

    def hold(self, channel_id: int, seconds: float) -> None:
        now = time.monotonic()
        if len(self._until) > 10_000:
            self._until = {channel: t for channel, t in self._until.items() if t > now}
        self._until[channel_id] = max(self._until.get(channel_id, 0.0), now + seconds)

    def in_wait(self, channel_id: int) -> bool:
        return self._until.get(channel_id, 0.0) > time.monotonic()

    async def over(self, channel_id: int) -> None:
        """Return once the channel is not inside a wait (a wait that begins meanwhile is waited out too)."""
        while (wait := self._until.get(channel_id, 0.0) - time.monotonic()) > 0:
            await asyncio.sleep(wait)
