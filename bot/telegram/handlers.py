"""The bot's handlers, one per kind of update; app.build_application routes updates to them."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError

from bot.commands import EMPTY_MENTION, NOT_YOURS, friendly_error, may_press, parse_command
from bot.telegram.addressing import text_for_brain
from bot.telegram.context import Context
from bot.telegram.keyboards import pressed, remove_keyboard
from bot.telegram.replying import chat_request, outbox_for, run_and_show, stream_answer

log = logging.getLogger(__name__)


async def on_command(update: Update, context: Context) -> None:
    """Run a typed command and show its reply; an operator command from anyone else gets no answer."""
    message = update.effective_message
    assert message is not None, "routed here for messages only (see app.build_application)"
    parsed = parse_command(message.text or "")
    if parsed is not None:
        await run_and_show(update, context, *parsed)


async def on_message(update: Update, context: Context) -> None:
    """Answer a message meant for me with the brain's reply, streamed into one message."""
    message = update.effective_message
    assert message is not None, "routed here for messages only (see app.build_application)"
    outbox = outbox_for(update, context, formatted=True)
    text = text_for_brain(message)
    if not text:
        await outbox.post(EMPTY_MENTION)
        return
    data = context.bot_data
    await stream_answer(data.client, outbox, chat_request(update, context, text), window_s=data.retry_window_s)


async def on_button(update: Update, context: Context) -> None:
    """Run the command behind a pressed button, for the member it was offered to; it is pressed once."""
    query = update.callback_query
    assert query is not None, "routed here for button presses only (see app.build_application)"
    button = pressed(query.data or "")
    if button is None or not may_press(button.owner_id, str(query.from_user.id)):
        await query.answer(NOT_YOURS)
        return
    await query.answer()
    await remove_keyboard(query)
    await run_and_show(update, context, button.name, button.args)


async def on_error(update: object, context: Context) -> None:
    """Log what failed and tell the chat briefly, never with a traceback."""
    error = context.error
    log.error("failed to handle a Telegram update", exc_info=error)
    # PTB always hands its error handlers the error; without one there is nothing to explain
    if error is not None and isinstance(update, Update) and update.effective_chat is not None:
        try:
            await context.bot.send_message(update.effective_chat.id, friendly_error(error))
        except TelegramError as exc:
            log.warning("could not tell chat %s about the failure: %s", update.effective_chat.id, exc)
