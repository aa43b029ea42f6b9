"""Rate limits: a fixed window of requests per member (``oc:rate``), counted and given its TTL in one script, so
that a window always ends however requests race its expiry."""

from __future__ import annotations

from typing import Any

from brain.store import keys, scripts


class RateLimits:
    """Each member's request counter over a window of ``window_s`` seconds."""

    def __init__(self, client: Any, *, window_s: int = 60):
        self.r = client
        self.window_s = window_s
        self._count = scripts.register(client, "count_request")

    async def take(self, user: str) -> tuple[int, int]:
        """Count one request against the user's rate window: (requests in this window, seconds it has left)."""
        count, ttl = await self._count(keys=[keys.rate(user)], args=[self.window_s])
        return int(count), max(int(ttl), 1)

    def queue_take(self, pipe: Any, user: str) -> None:
        """Queue counting one request (``take``) on a pipeline; its reply is (count, ttl)."""
        scripts.queue(pipe, self._count, [keys.rate(user)], [self.window_s])
