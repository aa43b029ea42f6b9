"""Inline keyboard presses: each button stands for a command line, run as if its presser typed it."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.commands import parse_command
from bot.telegram.command_handlers import run_and_show
from bot.telegram.keyboards import pressed

log = logging.getLogger(__name__)

NOT_YOURS = "This button is for the person who asked."


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Run the command behind a pressed button; confirmations only for the person who asked."""
    query = update.callback_query
    command, owner = pressed(query.data or "")
    if owner is not None and owner != query.from_user.id:
        await query.answer(NOT_YOURS)
        return
    await query.answer()
    parsed = parse_command(command)
    if parsed is None:
        return
    if owner is not None:
        await _remove_keyboard(update)
    await run_and_show(update, context, *parsed)


async def _remove_keyboard(update: Update) -> None:
    """A confirmation is pressed once; taking its button away keeps it from being pressed again."""
    try:
        await update.callback_query.edit_message_reply_markup(reply_markup=None)
    except TelegramError as exc:
        log.info("could not remove a pressed confirmation button: %s", exc)
