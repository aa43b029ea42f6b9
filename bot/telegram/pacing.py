"""Keeping within Telegram's flood limits: one call per interval per chat, and 429s waited out."""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram.error import RetryAfter
from telegram.warnings import PTBDeprecationWarning

T = TypeVar("T")
log = logging.getLogger(__name__)


def retry_after_seconds(exc: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds, whatever type this PTB version reports it as."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class ChatPacer:
    """Hands out call slots per chat, `interval_s` apart; a 429 pushes the chat's next slot back.

    Slots are reserved in call order, so several replies streaming into one group share its budget
    instead of each assuming it has the chat to itself.
    """

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._next_free: dict[int, float] = {}

    async def wait_turn(self, chat_id: int) -> None:
        now = time.monotonic()
        if len(self._next_free) > 10_000:
            self._next_free = {chat: t for chat, t in self._next_free.items() if t > now}
        slot = max(now, self._next_free.get(chat_id, 0.0))
        self._next_free[chat_id] = slot + self.interval_s
        if slot > now:
            await asyncio.sleep(slot - now)

    def hold(self, chat_id: int, seconds: float) -> None:
        self._next_free[chat_id] = max(self._next_free.get(chat_id, 0.0), time.monotonic() + seconds)

    async def call(self, chat_id: int, make_call: Callable[[], Awaitable[T]]) -> T:
        """Run one Bot API call in the chat's next slot; on 429 wait as told and try again, never drop it."""
        while True:
            await self.wait_turn(chat_id)
            try:
                return await make_call()
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                log.warning("Telegram asked to slow down in chat %s: waiting %.1f s", chat_id, seconds)
                self.hold(chat_id, seconds)
