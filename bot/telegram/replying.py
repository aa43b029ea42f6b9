"""What the handlers show: the brain's reply streamed into the chat, and a command's reply with its buttons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from telegram import Bot, Update
from telegram.constants import ChatAction
from telegram.error import TelegramError

from bot.client import BrainClient, BrainError
from bot.commands import friendly_error, run_command
from bot.streaming import StreamedReply
from bot.telegram.addressing import in_group, reply_context
from bot.telegram.context import Context
from bot.telegram.keyboards import keyboard
from bot.telegram.limits import MESSAGE_LIMIT, TYPING_REFRESH_S
from bot.telegram.outbox import Outbox
from bot.telegram.speakers import commander, speaker_for
from brain.api_models import ChatReply, ChatRequest

log = logging.getLogger(__name__)


def outbox_for(update: Update, context: Context, *, formatted: bool = False) -> Outbox:
    """The update's chat; in a group, answers quote the message they answer. Only model replies are formatted."""
    message = update.effective_message
    reply_to = message.message_id if message is not None and in_group(message) else None
    data = context.bot_data
    parse_mode = data.parse_mode if formatted else None
    return Outbox(context.bot, data.pacer, update.effective_chat.id, reply_to=reply_to, parse_mode=parse_mode)


def chat_request(update: Update, context: Context, text: str) -> ChatRequest:
    """What the brain is asked: the message's words, who said them where, and the message they reply to."""
    who = speaker_for(update, context.bot_data.settings)
    context_messages = reply_context(update.effective_message)
    return ChatRequest(**who.chat.model_dump(), display_name=who.display_name, text=text, context=context_messages)


async def stream_answer(client: BrainClient, outbox: Outbox, request: ChatRequest) -> None:
    """Stream the brain's reply into the chat; a failure ends in a short friendly message, never silence."""
    async with StreamedReply(outbox, limit=MESSAGE_LIMIT) as reply:
        try:
            async with (
                typing_shown(outbox.bot, outbox.chat_id),
                contextlib.aclosing(client.chat_stream(request)) as pieces,
            ):
                async for piece in pieces:
                    if isinstance(piece, ChatReply):
                        await reply.finish(piece.reply)
                        return
                    reply.add(piece)
        except BrainError as exc:
            log.warning("no reply from the brain for %s: %s %s", request.key, exc.code, exc.message)
            await reply.cut_off()
            await outbox.post(friendly_error(exc))


async def run_and_show(update: Update, context: Context, name: str, args: str) -> None:
    """Run `/name args` as the update's member in the update's chat, and show the reply there."""
    data = context.bot_data
    who = await commander(update, context.bot, data.settings, name, args)
    reply = await run_command(data.client, who, name, args)
    if reply is not None:
        await outbox_for(update, context).post_long(reply.text, keyboard(reply.buttons, update.effective_user.id))


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
            await asyncio.sleep(TYPING_REFRESH_S)

    task = asyncio.create_task(keep_typing(), name="telegram-typing")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
