"""Waits Discord asks for, honoured by the adapter itself where a call is worth making anew after one.

discord.py keeps Discord's rate-limit buckets and, on a 429, sleeps `retry_after` and then sends the same request
again. For a streamed reply that is the wrong call to make after a wait: the text it carries is as old as the wait,
while newer text (often the whole reply) is ready. So a reply's calls are made inside `raising_on_wait()`: there a
429 raises discord.RateLimited at once, as discord.py does for waits longer than its `max_ratelimit_timeout`
(which accepts nothing under 30 s, and holds for every call of the bot), and a call that discord.py would hold
back because its bucket is used up raises as well. The caller marks the channel as waiting in `ChannelWaits`;
its reply is drawn anew, with the newest text, once the wait is over, and no typing indicator goes to that channel
meanwhile. Every other call keeps discord.py's own handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import discord
from discord.http import HTTPClient, Ratelimit, Route

# a wait longer than this raises; it must be above 0, which discord.py reads as "no maximum"
_ANY_WAIT_S = 1e-6
_raising: ContextVar[bool] = ContextVar("discord_waits_raise", default=False)


@contextlib.contextmanager
def raising_on_wait() -> Iterator[None]:
    """Calls made inside raise discord.RateLimited instead of waiting for Discord's rate limits."""
    token = _raising.set(True)
    try:
        yield
    finally:
        _raising.reset(token)


class WaitRaisingHTTPClient(HTTPClient):
    """discord.py's HTTP client, whose calls inside `raising_on_wait()` raise RateLimited instead of waiting."""

    _configured_timeout: float | None

    @property
    def max_ratelimit_timeout(self) -> float | None:
        # discord.py reads this when a 429 comes: a wait longer than it raises instead of being slept through
        return _ANY_WAIT_S if _raising.get() else self._configured_timeout

    @max_ratelimit_timeout.setter
    def max_ratelimit_timeout(self, value: float | None) -> None:
        self._configured_timeout = value

    def get_ratelimit(self, key: str) -> Ratelimit:
        # a bucket keeps the timeout it was made with, for every later call in it: never the raising one
        token = _raising.set(False)
        try:
            return super().get_ratelimit(key)
        finally:
            _raising.reset(token)

    async def request(self, route: Route, **kwargs: Any) -> Any:
        if _raising.get() and (wait := self._bucket_wait(route)) > 0:
            raise discord.RateLimited(wait)
        return await super().request(route, **kwargs)

    def _bucket_wait(self, route: Route) -> float:
        """How long discord.py would hold this call back because its bucket is used up (0: not at all)."""
        bucket_hash = self._bucket_hashes.get(route.key)
        bucket = self._buckets.get(f"{bucket_hash or route.key}:{route.major_parameters}")
        if bucket is None or bucket.remaining > 0 or bucket.expires is None:
            return 0.0
        return max(0.0, bucket.expires - asyncio.get_running_loop().time())


def install(client: discord.Client) -> None:
    """Give `client` the wait-raising HTTP client (before it connects).

    discord.py builds its HTTP client inside Client.__init__, with no way to pass another, and hands that object
    to several parts (the connection state, the command tree): the object's class is changed, so every part keeps
    the one client, with its buckets, its session and its settings.
    """
    http = client.http
    timeout = vars(http).pop("max_ratelimit_timeout", None)
    http.__class__ = WaitRaisingHTTPClient
    http.max_ratelimit_timeout = timeout


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
