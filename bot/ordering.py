"""The order in which a member's messages are answered, the same on every platform.

A member's turns in one chat are answered one at a time, in the order they were sent; their turns in
other chats, and everyone else's, are answered concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class TurnQueue:
    """A lock per (chat, member), dropped when nobody waits for it any more."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._waiting: dict[Hashable, int] = {}

    def busy(self, chat_id: Hashable, user_id: Hashable) -> bool:
        """Whether a message of this member in this chat would wait for an earlier one."""
        lock = self._locks.get((chat_id, user_id))
        return lock is not None and lock.locked()

    @asynccontextmanager
    async def turn(self, chat_id: Hashable, user_id: Hashable) -> AsyncIterator[None]:
        """Wait for this member's earlier messages in this chat to be answered.

        asyncio.Lock wakes its waiters first come, first served; discord.py and python-telegram-bot start
        one task per event in the order the events arrived, so entering here before any other await keeps
        that order.
        """
        key = (chat_id, user_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._locks[key]
