"""Messages meant for the bot: sent to the brain, its reply streamed back."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.telegram.addressing import in_group, reply_context, text_for_brain
from bot.telegram.context import deps
from bot.telegram.outbox import Outbox
from bot.telegram.replying import stream_answer
from bot.telegram.speakers import speaker_for
from brain.api_models import ChatRequest

EMPTY_MENTION = "Yes? Ask me anything, or see /help."


async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer a message meant for me with the brain's reply, streamed into one message."""
    d, message = deps(context), update.effective_message
    who = speaker_for(update, d.settings)
    reply_to = message.message_id if in_group(message) else None
    outbox = Outbox(context.bot, d.pacer, message.chat_id, reply_to=reply_to, parse_mode=d.parse_mode)
    text = text_for_brain(message)
    if not text:
        await outbox.send(EMPTY_MENTION)
        return
    request = ChatRequest(
        **who.chat.model_dump(), display_name=who.display_name, text=text, context=reply_context(message)
    )
    await stream_answer(d.client, outbox, request)
