"""Sending, editing and deleting the bot's messages in one chat: paced within Telegram's flood limits
(bot.telegram.limits), and never broken by formatting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot.splitting import split_message
from bot.streaming import EMPTY_REPLY, MessageGone, TryLater
from bot.telegram.limits import (
    CANNOT_EDIT,
    CHAT_INTERVAL_S,
    GROUP_MESSAGES_PER_MINUTE,
    MESSAGE_GONE,
    MESSAGE_LIMIT,
    NOT_MODIFIED,
    PARSE_ERROR,
    TYPING_REFRESH_S,
    is_group_chat,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
# a draft animates without flood limits; this spaces its updates all the same, so a fast model costs few calls
DRAFT_INTERVAL_S = 0.25


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
    """Hands out call slots per chat: `interval_s` apart, at most `group_per_minute` a minute in a group, and
    none while the chat is inside a flood wait (a 429 holds that chat, and only that chat).

    Slots are reserved in call order, so several replies streaming into one group share its budget
    instead of each assuming it has the chat to itself.
    """

    def __init__(self, interval_s: float = CHAT_INTERVAL_S, *, group_per_minute: int = GROUP_MESSAGES_PER_MINUTE):
        self.interval_s = interval_s
        self.group_per_minute = group_per_minute
        self._next_free: dict[int, float] = {}
        self._flood_until: dict[int, float] = {}
        self._group_slots: dict[int, deque[float]] = {}  # a group's slots of the last minute

    def free_at(self, chat_id: int) -> float:
        """The earliest moment (time.monotonic) a call may go to the chat."""
        at = max(self._next_free.get(chat_id, 0.0), self._flood_until.get(chat_id, 0.0))
        slots = self._group_slots.get(chat_id)
        if slots is not None and len(slots) == self.group_per_minute:
            at = max(at, min(slots) + 60.0)
        return at

    def in_flood_wait(self, chat_id: int) -> bool:
        return self._flood_until.get(chat_id, 0.0) > time.monotonic()

    async def ready(self, chat_id: int) -> None:
        """Return once a call could go to the chat now (nothing is reserved)."""
        while (wait := self.free_at(chat_id) - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    async def wait_turn(self, chat_id: int) -> float:
        """Wait for the chat's next slot; returns the slot reserved, for `sent` to correct."""
        now = time.monotonic()
        self._forget_idle_chats(now)
        slot = max(now, self.free_at(chat_id))
        self._next_free[chat_id] = slot + self.interval_s
        if is_group_chat(chat_id):
            self._group_slots.setdefault(chat_id, deque(maxlen=self.group_per_minute)).append(slot)
        if slot > now:
            await asyncio.sleep(slot - now)
        # a flood wait that began while this call waited for its slot holds it too
        await self._flood_over(chat_id)
        return slot

    def sent(self, chat_id: int, slot: float) -> None:
        """The call of `slot` goes now: the chat is paced from when it went, not from when it was planned (a busy
        loop or a flood wait can make it later), so two calls are never closer than `interval_s`."""
        now = time.monotonic()
        self._next_free[chat_id] = max(self._next_free.get(chat_id, 0.0), now + self.interval_s)
        slots = self._group_slots.get(chat_id)
        if slots is not None and slot in slots:
            slots.remove(slot)
            slots.append(now)

    async def _flood_over(self, chat_id: int) -> None:
        while (wait := self._flood_until.get(chat_id, 0.0) - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram asked for a wait in this chat: no call goes there before it is over."""
        self._flood_until[chat_id] = max(self._flood_until.get(chat_id, 0.0), time.monotonic() + seconds)

    async def call(self, chat_id: int, make_call: Callable[[], Awaitable[T]], *, resend: bool = True) -> T:
        """Run one Bot API call in the chat's next slot. On a flood wait (429) the chat is held as told, then the
        call is made again (`resend`), or TryLater is raised, for a caller that makes a newer call instead."""
        while True:
            slot = await self.wait_turn(chat_id)
            self.sent(chat_id, slot)
            try:
                return await make_call()
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                log.warning("Telegram asked to slow down in chat %s: waiting %.1f s", chat_id, seconds)
                self.hold(chat_id, seconds)
                if not resend:
                    raise TryLater(seconds) from exc

    def _forget_idle_chats(self, now: float) -> None:
        if len(self._next_free) <= 10_000:
            return
        self._next_free = {chat: t for chat, t in self._next_free.items() if t > now}
        self._flood_until = {chat: t for chat, t in self._flood_until.items() if t > now}
        self._group_slots = {chat: s for chat, s in self._group_slots.items() if s and s[-1] > now - 60.0}


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

    async def post(self, text: str, reply_markup: InlineKeyboardMarkup | None = None, *, resend: bool = True) -> int:
        """Send one message (at most MESSAGE_LIMIT long); returns its id. See ChatPacer.call for `resend`."""
        reply = ReplyParameters(self.reply_to, allow_sending_without_reply=True) if self.reply_to else None
        message = await self._formatted(
            lambda mode: self.bot.send_message(
                self.chat_id, text, parse_mode=mode, reply_parameters=reply, reply_markup=reply_markup
            ),
            resend=resend,
        )
        return message.message_id

    async def edit(self, message_id: int, text: str) -> None:
        """Replace the text of one of the bot's messages. Raises MessageGone when it was deleted or may not be
        edited any more, and TryLater on a flood wait (the caller edits again with its newest text)."""
        try:
            await self._formatted(
                lambda mode: self.bot.edit_message_text(text, self.chat_id, message_id, parse_mode=mode),
                resend=False,
            )
        except BadRequest as exc:
            if says(exc, MESSAGE_GONE) or says(exc, CANNOT_EDIT):
                raise MessageGone(exc.message) from exc
            if not says(exc, NOT_MODIFIED):
                raise

    async def add_keyboard(self, message_id: int, reply_markup: InlineKeyboardMarkup) -> None:
        """Put buttons under one of the bot's messages; without them the message still stands, so a refusal is
        only logged."""
        try:
            await self.pacer.call(
                self.chat_id,
                lambda: self.bot.edit_message_reply_markup(self.chat_id, message_id, reply_markup=reply_markup),
            )
        except TelegramError as exc:
            log.info("could not put buttons under message %s in chat %s: %s", message_id, self.chat_id, exc)

    async def delete(self, message_id: int) -> None:
        """Delete one of the bot's messages, if Telegram still lets it."""
        try:
            await self.pacer.call(self.chat_id, lambda: self.bot.delete_message(self.chat_id, message_id))
        except TelegramError as exc:
            log.info("could not delete message %s in chat %s: %s", message_id, self.chat_id, exc)

    async def post_long(self, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> list[int]:
        """Send a text of any length as several messages; buttons go under the last one."""
        pieces = split_message(text, MESSAGE_LIMIT) or [EMPTY_REPLY]
        ids = [await self.post(piece) for piece in pieces[:-1]]
        ids.append(await self.post(pieces[-1], reply_markup))
        return ids

    async def _formatted(self, call: Callable[[str | None], Awaitable[T]], *, resend: bool) -> T:
        """Make a paced call with the parse mode; if Telegram cannot parse the text, again as plain text."""
        mode = self.parse_mode
        try:
            return await self.pacer.call(self.chat_id, lambda: call(mode), resend=resend)
        except BadRequest as exc:
            if mode is None or not says(exc, PARSE_ERROR):
                raise
            log.info("Telegram could not parse a reply as %s (%s); sending plain text", mode, exc.message)
            self.parse_mode = None
            return await self.pacer.call(self.chat_id, lambda: call(None), resend=resend)


class ReplyScreen:
    """An Outbox as a streamed reply's Screen (bot.streaming): its text is taken once the chat's pacing and any
    flood wait are over, and a call refused with a flood wait is not made again as it was: the reply is drawn
    anew after the wait, with its newest text."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    async def ready(self) -> None:
        await self.outbox.pacer.ready(self.outbox.chat_id)

    async def post(self, text: str) -> int:
        return await self.outbox.post(text, resend=False)

    async def edit(self, message_id: int, text: str) -> None:
        await self.outbox.edit(message_id, text)

    async def delete(self, message_id: int) -> None:
        await self.outbox.delete(message_id)

    async def still_there(self, message_id: int, text: str) -> None:
        # Telegram tells a bot of no deletion; an edit to the same text answers "not modified" while it is there
        await self.outbox.edit(message_id, text)

    async def settle(self) -> None:
        """Every piece is a message already."""

    def message_id(self, message_id: int) -> str:
        return str(message_id)


@dataclass
class Draft:
    """A piece of a reply in a private chat: a draft while it is written, a message once it is sent."""

    text: str
    message_id: int | None = None


class DraftScreen:
    """A private chat's Screen with Telegram's native streaming (sendMessageDraft): the piece being written
    animates as a draft, which has no flood limits, and is sent as a message once it is complete (a next piece
    began, or the reply ended). Where Telegram refuses drafts, pieces are messages edited as ReplyScreen does."""

    def __init__(self, outbox: Outbox, *, interval_s: float = DRAFT_INTERVAL_S):
        self.outbox = outbox
        self.interval_s = interval_s
        # a draft id is the reply's: changes to one draft animate
        self.draft_id = secrets.randbelow(2**31 - 1) + 1
        self.drafts_work = True
        self._open: Draft | None = None
        self._last_draft = float("-inf")
        self._edits = ReplyScreen(outbox)

    async def ready(self) -> None:
        if self._open is None or not self.drafts_work:
            await self._edits.ready()
        while (wait := self._last_draft + self.interval_s - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    async def post(self, text: str) -> Draft:
        await self.settle()
        piece = Draft(text)
        if await self._draft(text):
            self._open = piece
        else:
            piece.message_id = await self._edits.post(text)
        return piece

    async def edit(self, piece: Draft, text: str) -> None:
        if piece is self._open and await self._draft(text):
            piece.text = text
            return
        if piece is self._open:  # drafts refused midway: the piece becomes a message
            self._open = None
            piece.message_id = await self._edits.post(text)
        elif piece.message_id is not None:
            await self._edits.edit(piece.message_id, text)
        piece.text = text

    async def delete(self, piece: Draft) -> None:
        if piece is self._open:
            self._open = None
        elif piece.message_id is not None:
            await self._edits.delete(piece.message_id)

    async def still_there(self, piece: Draft, text: str) -> None:
        if piece.message_id is not None:
            await self._edits.still_there(piece.message_id, text)

    async def settle(self) -> None:
        """Send the piece being drafted as a message (a draft is only a preview: it stays once sent)."""
        piece, self._open = self._open, None
        if piece is not None:
            try:
                piece.message_id = await self._edits.post(piece.text)
            except TryLater:
                self._open = piece
                raise

    def message_id(self, piece: Draft) -> str:
        return str(piece.message_id)

    async def _draft(self, text: str) -> bool:
        """Show `text` as the reply's draft; False once Telegram refuses drafts here (edits take over)."""
        if not self.drafts_work:
            return False
        self._last_draft = time.monotonic()
        try:
            await self.outbox.bot.send_message_draft(
                self.outbox.chat_id, self.draft_id, text, parse_mode=self.outbox.parse_mode
            )
        except RetryAfter as exc:
            seconds = retry_after_seconds(exc)
            self.outbox.pacer.hold(self.outbox.chat_id, seconds)
            raise TryLater(seconds) from exc
        except BadRequest as exc:
            if self.outbox.parse_mode is not None and says(exc, PARSE_ERROR):
                self.outbox.parse_mode = None
                return await self._draft(text)
            log.info("Telegram refused a draft in chat %s (%s); the reply streams by edits", self.outbox.chat_id, exc)
            self.drafts_work = False
            return False
        return True


@contextlib.asynccontextmanager
async def typing_shown(outbox: Outbox) -> AsyncIterator[None]:
    """Show "typing…" in the outbox's chat for as long as the block runs, except while the chat is inside a
    flood wait (a chat action then would only count against the bot)."""
    pacer, chat_id = outbox.pacer, outbox.chat_id

    async def keep_typing() -> None:
        while True:
            if not pacer.in_flood_wait(chat_id):
                try:
                    await outbox.bot.send_chat_action(chat_id, ChatAction.TYPING)
                except RetryAfter as exc:
                    pacer.hold(chat_id, retry_after_seconds(exc))
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
