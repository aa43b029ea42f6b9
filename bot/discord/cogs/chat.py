"""Chat: answers DMs, mentions and messages in reply channels, streaming the reply as it is written."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot import answering
from bot.commands import EMPTY_MENTION, friendly_error
from bot.discord.comparison import offer_comparison
from bot.discord.context import earlier_messages, readable_text
from bot.discord.limits import MESSAGE_LIMIT
from bot.discord.screen import ChannelScreen
from bot.discord.speakers import speaker_for_message
from bot.ordering import TurnQueue
from bot.streaming import StreamedReply
from brain.api_models import ChatRequest

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot

log = logging.getLogger(__name__)

_USER_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)
# the reaction on a message that waits for the member's earlier one to be answered
QUEUED = "⏳"


async def _mark(message: discord.Message, emoji: str) -> bool:
    """React to a message; whether it took (a missing permission or a deleted message costs only the mark)."""
    try:
        await message.add_reaction(emoji)
    except discord.HTTPException as exc:
        log.info("could not mark message %s as queued: %s", message.id, exc)
        return False
    return True


class Chat(commands.Cog):
    def __init__(self, bot: OwnchatBot):
        self.bot = bot
        self.turns = TurnQueue()
        # the replies streaming in each channel, told of deletions there so that a deleted piece is shown again
        self.streaming: dict[int, set[StreamedReply]] = {}

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self.is_addressed(message):
            return
        # a message that waits for the member's earlier one shows it is queued (⏳), until its turn comes
        waiting = self.turns.busy(message.channel.id, message.author.id)
        marked = asyncio.create_task(_mark(message, QUEUED)) if waiting else None
        async with self.turns.turn(message.channel.id, message.author.id):
            if marked is not None and await marked and self.bot.user is not None:
                with suppress(discord.HTTPException):
                    await message.remove_reaction(QUEUED, self.bot.user)
            await self.answer(message)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, event: discord.RawMessageDeleteEvent) -> None:
        for reply in self.streaming.get(event.channel_id, ()):
            reply.vanished(str(event.message_id))

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, event: discord.RawBulkMessageDeleteEvent) -> None:
        for reply in self.streaming.get(event.channel_id, ()):
            for message_id in event.message_ids:
                reply.vanished(str(message_id))

    def is_addressed(self, message: discord.Message) -> bool:
        me = self.bot.user
        if me is None or message.author.bot or message.type not in _USER_MESSAGE_TYPES:
            return False
        if not self.bot.access.allows_message(message):
            return False
        if message.guild is None or self.bot.access.answers_every_message(message.channel):
            return True
        if me.id in message.raw_mentions:
            return True
        replied_to = message.reference.resolved if message.reference else None
        return isinstance(replied_to, discord.Message) and replied_to.author.id == me.id

    @contextmanager
    def _watching(self, channel_id: int, reply: StreamedReply) -> Iterator[None]:
        watched = self.streaming.setdefault(channel_id, set())
        watched.add(reply)
        try:
            yield
        finally:
            watched.discard(reply)
            if not watched:
                self.streaming.pop(channel_id, None)

    async def answer(self, message: discord.Message) -> None:
        me = self.bot.user
        assert me is not None
        text = readable_text(message, me.id)
        screen = ChannelScreen(message, self.bot.waits, self.bot.reply_limits)
        try:
            if not text:
                await screen.say(EMPTY_MENTION)
                return
            who = speaker_for_message(message, self.bot.config.operators)
            request = ChatRequest(
                **who.chat.model_dump(),
                display_name=who.display_name,
                text=text,
                context=await earlier_messages(message, me.id),
                # a snowflake is unique on Discord: asked again, the brain stores the turn once
                request_id=str(message.id),
            )
            interval_s = self.bot.config.edit_interval_s
            async with (
                StreamedReply(screen, limit=MESSAGE_LIMIT, interval_s=interval_s) as reply,
                AsyncExitStack() as typing,
            ):
                await typing.enter_async_context(screen.typing())
                # the indicator stops once words (or a notice) are coming: it would only linger beside them
                window_s = self.bot.settings.bot.retry_window_s
                with self._watching(screen.channel_id, reply):
                    answered = await answering.answer(
                        self.bot.brain, request, reply, window_s=window_s, on_screen=typing.aclose
                    )
            await offer_comparison(self.bot, message, request, answered)
        except discord.HTTPException:
            log.exception("could not post a reply in channel %s", message.channel.id)
        except Exception as exc:  # the user gets a sentence, the log gets the traceback
            log.exception("answering message %s failed", message.id)
            with suppress(discord.HTTPException):
                await screen.say(friendly_error(exc))
