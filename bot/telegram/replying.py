"""What the handlers show: the brain's reply streamed into the chat, and a command's reply with its buttons."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from telegram import InlineKeyboardMarkup, Update

from bot.answering import answer
from bot.client import BrainClient, BrainError
from bot.commands import friendly_error, run_command
from bot.feedback import UNKNOWN_TURN, retry_request
from bot.streaming import Screen, StreamedReply
from bot.telegram.addressing import in_group, replies_to_me, reply_context
from bot.telegram.context import Context
from bot.telegram.keyboards import keyboard
from bot.telegram.limits import MESSAGE_LIMIT, is_group_chat
from bot.telegram.outbox import DraftScreen, Outbox, ReplyScreen, typing_shown
from bot.telegram.speakers import commander, sender_and_chat, speaker_for
from brain.api_models import ChatReply, ChatRequest

log = logging.getLogger(__name__)


def outbox_for(update: Update, context: Context, *, formatted: bool = False) -> Outbox:
    """The update's chat; in a group, answers quote the message they answer. Only model replies are formatted."""
    message = update.effective_message
    reply_to = message.message_id if message is not None and in_group(message) else None
    chat = update.effective_chat
    if chat is None:
        raise ValueError("this update has no chat")
    data = context.bot_data
    parse_mode = data.parse_mode if formatted else None
    return Outbox(context.bot, data.pacer, chat.id, reply_to=reply_to, parse_mode=parse_mode)


def chat_request(update: Update, context: Context, text: str) -> ChatRequest:
    """What the brain is asked: the message's words, who said them where, and the message they reply to.

    The message's id is the request's idempotency key: asked again, the brain stores its turn once."""
    who = speaker_for(update, context.bot_data.settings)
    message = update.effective_message
    if message is None:
        raise ValueError("this update carries no message")
    return ChatRequest(
        **who.chat.model_dump(),
        display_name=who.display_name,
        text=text,
        context=reply_context(message),
        request_id=f"{message.chat_id}:{message.message_id}",
    )


def retry_for(update: Update, context: Context) -> ChatRequest:
    """/retry: the message that the bot's message it replies to answered, else the member's last one here, asked
    again. The /retry message's id is the request's idempotency key."""
    who = speaker_for(update, context.bot_data.settings)
    message = update.effective_message
    if message is None:
        raise ValueError("this update carries no message")
    replied = message.reply_to_message
    of_message = str(replied.message_id) if replied is not None and replies_to_me(message) else None
    return retry_request(who, of_message=of_message, request_id=f"{message.chat_id}:{message.message_id}")


async def stream_answer(
    client: BrainClient,
    outbox: Outbox,
    request: ChatRequest,
    *,
    window_s: float,
    rating_buttons: InlineKeyboardMarkup | None = None,
    refused: Callable[[BrainError], Awaitable[bool]] | None = None,
    drafts: bool = False,
) -> ChatReply | None:
    """Stream the brain's reply into the chat (see bot.answering: patient through a brain outage, never silent);
    `rating_buttons` go under its last message once it is whole."""
    # in a private chat the reply streams as a native draft; in groups (no drafts there) by edits
    screen: Screen[Any] = DraftScreen(outbox) if drafts and not is_group_chat(outbox.chat_id) else ReplyScreen(outbox)
    async with StreamedReply(screen, limit=MESSAGE_LIMIT) as reply, AsyncExitStack() as typing:
        await typing.enter_async_context(typing_shown(outbox))
        # "typing…" stops once words or a notice ("Still thinking…") show: beneath them it would only mislead
        answered = await answer(client, request, reply, window_s=window_s, on_screen=typing.aclose, refused=refused)
    if answered is not None and answered.turn_id is not None and rating_buttons is not None and reply.messages:
        await outbox.add_keyboard(int(screen.message_id(reply.messages[-1])), rating_buttons)
    return answered


# how long a notice meant for one member stays in the chat (Telegram has no message only one member sees)
SHORT_LIVED_S = 30.0


def privately(
    outbox: Outbox, run_later: Callable[[Coroutine[Any, Any, None]], object]
) -> Callable[[BrainError], Awaitable[bool]]:
    """A refusal for `/retry` of someone else's reply: a reply to the member's /retry (in a group), taken away after
    SHORT_LIVED_S; `run_later` runs the taking away in the background (the Application's create_task)."""

    async def show(error: BrainError) -> bool:
        if (error.status, error.code) != (404, UNKNOWN_TURN):
            return False
        notice = await outbox.post(friendly_error(error))

        async def take_away() -> None:
            await asyncio.sleep(SHORT_LIVED_S)
            await outbox.delete(notice)

        run_later(take_away())
        return True

    return show


async def run_and_show(update: Update, context: Context, name: str, args: str) -> None:
    """Run `/name args` as the update's member in the update's chat, and show the reply there."""
    data = context.bot_data
    who = await commander(update, context.bot, data.settings, name, args)
    reply = await run_command(data.client, who, name, args)
    if reply is not None:
        user, _ = sender_and_chat(update)
        await outbox_for(update, context).post_long(reply.text, keyboard(reply.buttons, user.id))
