"""Sending and editing the bot's messages in one chat: paced, and never broken by formatting."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, ReplyParameters
from telegram.error import BadRequest

from bot.telegram.pacing import ChatPacer
from bot.telegram.splitting import split_message

T = TypeVar("T")
log = logging.getLogger(__name__)


def is_parse_error(exc: BadRequest) -> bool:
    return "can't parse entities" in exc.message.lower()


def is_not_modified(exc: BadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


class Outbox:
    """The bot's messages into one chat, optionally as replies to one message.

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

    async def send(self, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> int:
        """Send one message (at most 4,096 characters); returns its id."""
        reply = ReplyParameters(self.reply_to, allow_sending_without_reply=True) if self.reply_to else None
        message = await self._formatted(
            lambda mode: self.bot.send_message(
                self.chat_id, text, parse_mode=mode, reply_parameters=reply, reply_markup=reply_markup
            )
        )
        return message.message_id

    async def edit(self, message_id: int, text: str) -> None:
        """Replace the text of one of the bot's messages."""
        try:
            await self._formatted(
                lambda mode: self.bot.edit_message_text(text, self.chat_id, message_id, parse_mode=mode)
            )
        except BadRequest as exc:
            if not is_not_modified(exc):
                raise

    async def _formatted(self, call: Callable[[str | None], Awaitable[T]]) -> T:
        """Make a paced call with the parse mode; if Telegram cannot parse the text, again as plain text."""
        mode = self.parse_mode
        try:
            return await self.pacer.call(self.chat_id, lambda: call(mode))
        except BadRequest as exc:
            if mode is None or not is_parse_error(exc):
                raise
            log.info("Telegram could not parse a reply as %s (%s); sending plain text", mode, exc.message)
            self.parse_mode = None
            return await self.pacer.call(self.chat_id, lambda: call(None))

    async def send_long(self, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> list[int]:
        """Send a text of any length as several messages; buttons go under the last one."""
        pieces = split_message(text) or ["…"]
        ids = [await self.send(piece) for piece in pieces[:-1]]
        ids.append(await self.send(pieces[-1], reply_markup))
        return ids
