"""The "typing…" status, kept alive while the model works (Telegram clears it after about 5 s)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from telegram import Bot
from telegram.constants import ChatAction
from telegram.error import TelegramError

log = logging.getLogger(__name__)

REFRESH_S = 4.0


@contextlib.asynccontextmanager
async def typing_shown(bot: Bot, chat_id: int) -> AsyncIterator[None]:
    """Show "typing…" in the chat for as long as the block runs."""

    async def keep_typing() -> None:
        while True:
            try:
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            except TelegramError as exc:
                # a missing status is cosmetic; never let it hold up or break the reply
                log.debug("could not show typing in chat %s: %s", chat_id, exc)
            await asyncio.sleep(REFRESH_S)

    task = asyncio.create_task(keep_typing(), name="telegram-typing")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
