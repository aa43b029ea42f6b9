"""bot.ordering's rule for Telegram: a member's updates in one chat are handled one after another; their ratings
(reactions and rating buttons) too, in a queue of their own."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Hashable
from typing import Any

from telegram import Chat, Message, Update
from telegram.error import TelegramError
from telegram.ext import BaseUpdateProcessor

from bot.ordering import TurnQueue
from bot.telegram.keyboards import RATING_PATTERN

log = logging.getLogger(__name__)
# the bot's reaction on a member's message that waits for their earlier one
QUEUED = "👀"


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
        queue, user = _queue(update, update.effective_chat.id), update.effective_user.id
        # in a private chat every message is for the bot: one that waits for the member's earlier one shows it is
        # queued (👀: Telegram lets bots react only with some emoji, ⏳ not among them), until its turn comes
        message = update.message
        waits = message is not None and message.chat.type == Chat.PRIVATE and self._turns.busy(queue, user)
        marked = asyncio.create_task(_react(message, QUEUED)) if waits and message is not None else None
        async with self._turns.turn(queue, user):
            if marked is not None and await marked and message is not None:
                await _react(message, None)
            await coroutine

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free."""


async def _react(message: Message, emoji: str | None) -> bool:
    """Set (or, with None, take back) the bot's reaction on a message; a refusal costs only the mark."""
    try:
        await message.set_reaction(emoji)
    except TelegramError as exc:
        log.info("could not mark message %s as queued: %s", message.message_id, exc)
        return False
    return True


def _queue(update: Update, chat_id: int) -> Hashable:
    """A rating need not wait for the member's reply still streaming, but their 👍 and its taking back a moment
    later must reach the brain in that order: ratings queue apart from messages."""
    query = update.callback_query
    if update.message_reaction is not None or (query is not None and re.match(RATING_PATTERN, query.data or "")):
        return (chat_id, "ratings")
    return chat_id
