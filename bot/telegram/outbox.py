"""Sending and editing the bot's messages in one chat: paced within Telegram's flood limits, and never
broken by formatting."""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, ReplyParameters
from telegram.error import BadRequest, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from bot.splitting import split_message
from bot.streaming import EMPTY_REPLY
from bot.telegram.limits import MESSAGE_GONE, MESSAGE_LIMIT, NOT_MODIFIED, PARSE_ERROR

T = TypeVar("T")
log = logging.getLogger(__name__)


def says(exc: BadRequest, what: str) -> bool:
    """Whether Telegram's refusal says `what` (it tells its errors apart only in words)."""
    return what in exc.message.lower()


def retry_after_seconds(exc: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds, whatever type this PTB version reports it as."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class ChatPacer:
    """Hands out call slots per chat, `interval_s` apart; a 429 pushes the chat's next slot back.

    Slots are reserved in call order, so several replies streaming into one group share its budget
    instead of each assuming it has the chat to itself.
    """

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._next_free: dict[int, float] = {}

    async def wait_turn(self, chat_id: int) -> None:
        now = time.monotonic()
        if len(self._next_free) > 10_000:
            self._next_free = {chat: t for chat, t in self._next_free.items() if t > now}
        slot = max(now, self._next_free.get(chat_id, 0.0))
        self._next_free[chat_id] = slot + self.interval_s
        if slot > now:
            await asyncio.sleep(slot - now)

    def hold(self, chat_id: int, seconds: float) -> None:
        self._next_free[chat_id] = max(self._next_free.get(chat_id, 0.0), time.monotonic() + seconds)

    async def call(self, chat_id: int, make_call: Callable[[], Awaitable[T]]) -> T:
        """Run one Bot API call in the chat's next slot; on 429 wait as told and try again, never drop it."""
        while True:
            await self.wait_turn(chat_id)
            try:
                return await make_call()
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                log.warning("Telegram asked to slow down in chat %s: waiting %.1f s", chat_id, seconds)
                self.hold(chat_id, seconds)


class Outbox:
    """The bot's messages into one chat, optionally as replies to one message; a Screen for streamed replies.

    With a parse mode, a text Telegram cannot parse is resent as plain text, and the outbox stays
    plain from then on: a model's half-written markup must never cost the user the reply.
    """

    def __init__(
        self,
        bot: Bot,
        pacer: ChatPacer,
        chat_id: int,
        *,
        reply_to: int | None = None,
        parse_mode: str | None = None,
    ):
        self.bot = bot
        self.pacer = pacer
        self.chat_id = chat_id
        self.reply_to = reply_to
        self.parse_mode = parse_mode

    async def post(self, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> int:
        """Send one message (at most MESSAGE_LIMIT long); returns its id."""
        reply = ReplyParameters(self.reply_to, allow_sending_without_reply=True) if self.reply_to else None
        message = await self._formatted(
            lambda mode: self.bot.send_message(
                self.chat_id, text, parse_mode=mode, reply_parameters=reply, reply_markup=reply_markup
            )
        )
        return message.message_id

    async def edit(self, message_id: int, text: str) -> int:
        """Replace the text of one of the bot's messages; one the user deleted is posted anew."""
        try:
            await self._formatted(
                lambda mode: self.bot.edit_message_text(text, self.chat_id, message_id, parse_mode=mode)
            )
        except BadRequest as exc:
            if says(exc, MESSAGE_GONE):
                return await self.post(text)
            if not says(exc, NOT_MODIFIED):
                raise
        return message_id

    async def post_long(self, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> list[int]:
        """Send a text of any length as several messages; buttons go under the last one."""
        pieces = split_message(text, MESSAGE_LIMIT) or [EMPTY_REPLY]
        ids = [await self.post(piece) for piece in pieces[:-1]]
        ids.append(await self.post(pieces[-1], reply_markup))
        return ids

    async def _formatted(self, call: Callable[[str | None], Awaitable[T]]) -> T:
        """Make a paced call with the parse mode; if Telegram cannot parse the text, again as plain text."""
        mode = self.parse_mode
        try:
            return await self.pacer.call(self.chat_id, lambda: call(mode))
        except BadRequest as exc:
            if mode is None or not says(exc, PARSE_ERROR):
                raise
            log.info("Telegram could not parse a reply as %s (%s); sending plain text", mode, exc.message)
            self.parse_mode = None
            return await self.pacer.call(self.chat_id, lambda: call(None))
