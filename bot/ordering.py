"""One person's messages are answered one at a time, in the order they were sent; everyone else's concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class TurnQueue:
    """A lock per key (a user, or a user in a chat), dropped when nobody waits for it any more."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._waiting: dict[Hashable, int] = {}

    @asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        """Wait for this key's earlier messages to be answered.

        asyncio.Lock wakes its waiters first come, first served; discord.py and python-telegram-bot start
        one task per event in the order the events arrived, so entering here before any other await keeps
        that order.
        """
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._locks[key]
