"""Idempotency keys of chat requests: a request asked again (a bot's retry) stores its turn once and is answered
with the reply kept for it. One key of each kind per member, so that /forget deletes them all."""

from __future__ import annotations

from typing import Any

from brain.store import keys, scripts
from brain.store.client import now_ms

# idempotency keys kept per user (a bot retries a message a few times, within a minute)
MAX_REQUEST_KEYS = 1000


class Idempotency:
    """``oc:requests`` (idempotency key -> when it was claimed) and ``oc:replied`` (the replies kept for them)."""

    def __init__(self, client: Any):
        self.r = client
        self._claim = scripts.register(client, "claim_request")
        self._keep_reply = scripts.register(client, "keep_reply")

    async def claim(self, user: str, request_id: str, ttl_s: int) -> bool:
        """Whether this is the first time the user's request with this idempotency key stores its turn."""
        args: list[Any] = [request_id, now_ms(), ttl_s * 1000, MAX_REQUEST_KEYS]
        return bool(int(await self._claim(keys=[keys.requests(user), keys.replied(user)], args=args)))

    async def keep_reply(self, user: str, request_id: str, reply: str, ttl_s: int) -> None:
        """Keep the reply (JSON) that answered the user's request with this idempotency key."""
        await self._keep_reply(keys=[keys.replied(user)], args=[request_id, reply, ttl_s * 1000])

    async def kept_reply(self, user: str, request_id: str) -> str | None:
        """The reply (JSON) kept for the user's request with this idempotency key, if any."""
        raw = await self.r.hget(keys.replied(user), request_id)
        return raw.decode() if isinstance(raw, bytes) else raw
