"""bot.ordering's rule for Telegram: a member's updates in one chat are handled one after another."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.ordering import TurnQueue


class InTurn(BaseUpdateProcessor):
    """A member's second message, sent while the first reply still streams, is answered after it.

    PTB starts the updates' tasks in the order they arrived, and TurnQueue lets them through in that order.
    """

    def __init__(self, max_concurrent_updates: int = 256):
        super().__init__(max_concurrent_updates)
        self._turns = TurnQueue()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if not isinstance(update, Update) or update.effective_chat is None or update.effective_user is None:
            await coroutine
            return
        async with self._turns.turn(update.effective_chat.id, update.effective_user.id):
            await coroutine

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free."""
