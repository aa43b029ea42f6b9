"""The training log: a stream per member (``oc:log``) of the turns they had while opted in, appended as a turn is
stored (Chats.record_turn) and read by the nightly export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from brain.store import keys
from brain.store.tombstones import Tombstones


class TrainingLog:
    """Each member's log stream, and ``oc:logged-users`` that lists who has one."""

    def __init__(self, client: Any, tombstones: Tombstones):
        self.r = client
        self.tombstones = tombstones

    async def length(self, user: str) -> int:
        return int(await self.r.xlen(keys.log(user)))

    async def entries(self, user: str, *, since_id: str = "-", count: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """The user's training log, oldest first; nothing for a forgotten user or from before the forget."""
        forgotten = await self.tombstones.forgotten_at(user)
        start = since_id
        while True:
            batch = await self.r.xrange(keys.log(user), min=start, max="+", count=count)
            if not batch:
                return
            for entry_id, fields in batch:
                if forgotten is None or int(entry_id.split("-")[0]) > forgotten:
                    yield {"id": entry_id, **fields}
            start = "(" + batch[-1][0]

    async def users(self) -> set[str]:
        """The members who have a log stream."""
        return set(await self.r.smembers(keys.LOGGED_USERS))
