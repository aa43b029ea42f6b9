"""bot.ordering's rule for Telegram: a member's updates in one chat are handled one after another; their ratings
(reactions and rating buttons) too, in a queue of their own."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Hashable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.ordering import TurnQueue
from bot.telegram.keyboards import RATING_PATTERN


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
        async with self._turns.turn(_queue(update, update.effective_chat.id), update.effective_user.id):
            await coroutine

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free."""


def _queue(update: Update, chat_id: int) -> Hashable:
    """A rating need not wait for the member's reply still streaming, but their 👍 and its taking back a moment
    later must reach the brain in that order: ratings queue apart from messages."""
    query = update.callback_query
    if update.message_reaction is not None or (query is not None and re.match(RATING_PATTERN, query.data or "")):
        return (chat_id, "ratings")
    return chat_id
