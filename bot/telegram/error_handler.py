"""The last resort: a failure is logged, and the user hears a short sentence instead of silence."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.commands import friendly_error

log = logging.getLogger(__name__)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log what failed and tell the chat briefly, never with a traceback."""
    log.error("failed to handle a Telegram update", exc_info=context.error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    try:
        await context.bot.send_message(update.effective_chat.id, friendly_error(context.error))
    except TelegramError as exc:
        log.warning("could not tell chat %s about the failure: %s", update.effective_chat.id, exc)
