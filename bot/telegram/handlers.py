"""The bot's handlers, one per kind of update; app.build_application routes updates to them."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from telegram import ReactionType, ReactionTypeCustomEmoji, ReactionTypeEmoji, Update
from telegram.error import TelegramError

from bot.client import BrainError
from bot.commands import EMPTY_MENTION, NOT_YOURS, friendly_error, may_press, parse_command
from bot.feedback import NOT_RATEABLE, rate, thanks
from bot.telegram.addressing import text_for_brain
from bot.telegram.comparison import offer_comparison
from bot.telegram.context import Context
from bot.telegram.keyboards import pressed, rating_pressed, remove_keyboard
from bot.telegram.limits import CALLBACK_ANSWER_LIMIT
from bot.telegram.replying import chat_request, outbox_for, privately, retry_for, run_and_show, stream_answer
from bot.telegram.speakers import speaker_for

log = logging.getLogger(__name__)


async def on_command(update: Update, context: Context) -> None:
    """Run a typed command and show its reply; an operator command from anyone else gets no answer."""
    message = update.effective_message
    assert message is not None, "routed here for messages only (see app.build_application)"
    parsed = parse_command(message.text or "")
    if parsed is None:
        return
    if parsed[0] == "retry":
        data = context.bot_data
        outbox = outbox_for(update, context, formatted=True)
        await stream_answer(
            data.client,
            outbox,
            retry_for(update, context),
            window_s=data.retry_window_s,
            rating_buttons=data.rating_buttons,
            refused=privately(outbox, context.application.create_task),
            drafts=data.settings.drafts,
        )
        return
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
    request = chat_request(update, context, text)
    answered = await stream_answer(
        data.client,
        outbox,
        request,
        window_s=data.retry_window_s,
        rating_buttons=data.rating_buttons,
        drafts=data.settings.drafts,
    )
    await offer_comparison(data.client, outbox, request, answered)


async def on_reaction(update: Update, context: Context) -> None:
    """A member's reactions on a message changed: a rating of the bot's reply there, given, changed or taken back."""
    reaction = update.message_reaction
    assert reaction is not None, "routed here for reactions only (see app.build_application)"
    if reaction.user is None or reaction.user.is_bot:
        return  # an anonymous admin's reaction names no member who could be asked for consent
    data = context.bot_data
    rating = data.reactions.change(_names(reaction.old_reaction), _names(reaction.new_reaction))
    if rating is None:
        return
    who = speaker_for(update, data.settings)
    # None: not a reply of the bot's (Telegram does not say whose message was reacted to)
    send = functools.partial(rate, data.client, who, rating, kind="reaction", message_id=str(reaction.message_id))
    data.ratings.give((who.chat_id, reaction.message_id, who.user_id), send)


async def on_rating(update: Update, context: Context) -> None:
    """A member pressed 👍 or 👎 under a reply; anyone in the chat may, and a second press replaces the first."""
    query = update.callback_query
    assert query is not None, "routed here for rating buttons only (see app.build_application)"
    rating = rating_pressed(query.data or "")
    if rating is None or query.message is None:
        await query.answer(NOT_RATEABLE)
        return
    data = context.bot_data
    who = speaker_for(update, data.settings)
    try:
        result = await rate(data.client, who, rating, kind="button", message_id=str(query.message.message_id))
    except BrainError as exc:
        await query.answer(friendly_error(exc)[:CALLBACK_ANSWER_LIMIT])
        return
    await query.answer((thanks(result) if result is not None else NOT_RATEABLE)[:CALLBACK_ANSWER_LIMIT])


def _names(reactions: Sequence[ReactionType]) -> set[str]:
    """An emoji reaction by its emoji, a custom one by its id (a paid star rates nothing)."""
    names = set()
    for reaction in reactions:
        if isinstance(reaction, ReactionTypeEmoji):
            names.add(reaction.emoji)
        elif isinstance(reaction, ReactionTypeCustomEmoji):
            names.add(reaction.custom_emoji_id)
    return names


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
