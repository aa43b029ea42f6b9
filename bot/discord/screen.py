"""A streamed reply's Screen on Discord: in a guild the answer replies to its question, in a DM it follows it.

discord.py keeps Discord's rate-limit buckets itself (bot.discord.limits), but a reply's posts and edits are made
through ReplyLimits, with waits raising (bot.discord.waits): a wait holds the channel, and the reply is drawn anew
once it is over, with the text it has then. A message that vanished, or that Discord will not let the bot edit, is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import discord

from bot.discord.limits import TYPING_REFRESH_S
from bot.discord.waits import ChannelWaits, ReplyLimits, ReplyRoute
from bot.streaming import MessageGone, TryLater

T = TypeVar("T")
log = logging.getLogger(__name__)


class ChannelScreen:
    def __init__(self, source: discord.Message, waits: ChannelWaits, limits: ReplyLimits):
        self.source = source
        self.waits = waits
        self.limits = limits
        self.channel_id = source.channel.id

    async def ready(self) -> None:
        """Return once the channel is not inside a wait Discord asked for."""
        await self.waits.over(self.channel_id)

    async def post(self, text: str) -> discord.Message:
        return await self._unless_asked_to_wait(ReplyRoute.SEND, lambda: self._send(text))

    async def say(self, text: str) -> discord.Message:
        """Post a message of its own, after any wait the channel is in (or comes into meanwhile)."""
        while True:
            await self.ready()
            try:
                return await self.post(text)
            except TryLater:
                continue

    async def edit(self, message: discord.Message, text: str) -> None:
        try:
            await self._unless_asked_to_wait(ReplyRoute.EDIT, lambda: message.edit(content=text))
        except (discord.NotFound, discord.Forbidden) as exc:
            # 10008 Unknown Message (deleted), or 403: the bot may not edit it any more
            raise MessageGone(str(exc)) from exc

    async def delete(self, message: discord.Message) -> None:
        await self.ready()
        try:
            await message.delete()
        except discord.HTTPException as exc:
            log.info("could not delete message %s: %s", message.id, exc)

    @contextlib.asynccontextmanager
    async def typing(self) -> AsyncIterator[None]:
        """ "typing…" in the channel while the body runs, renewed before it fades; none while the channel waits."""
        await self._type()
        renewing = asyncio.create_task(self._keep_typing(), name="typing")
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _keep_typing(self) -> None:
        while True:
            await asyncio.sleep(TYPING_REFRESH_S)
            await self.ready()
            await self._type()

    async def _type(self) -> None:
        if self.waits.in_wait(self.channel_id):
            return
        try:
            await self._unless_asked_to_wait(ReplyRoute.TYPING, self.source.channel.typing)
        except (TryLater, discord.HTTPException):
            pass  # without the typing indicator the reply still comes

    async def _send(self, text: str) -> discord.Message:
        if self.source.guild is None:
            return await self.source.channel.send(text)
        # in a guild, a reply keeps the answer attached to its question (and forms the reply chain); a question
        # deleted meanwhile leaves the answer standing on its own rather than failing it
        return await self.source.channel.send(text, reference=self.source.to_reference(fail_if_not_exists=False))

    async def _unless_asked_to_wait(self, route: ReplyRoute, make_call: Callable[[], Awaitable[T]]) -> T:
        """Make the call once; a wait Discord asks for holds the channel and raises TryLater, so that the caller
        makes a newer call after it rather than this one again."""
        try:
            return await self.limits.make(self.channel_id, route, make_call)
        except discord.RateLimited as exc:
            log.warning("Discord asked to slow down in channel %s: waiting %.2f s", self.channel_id, exc.retry_after)
            self.waits.hold(self.channel_id, exc.retry_after)
            raise TryLater(exc.retry_after) from exc

    async def still_there(self, message: discord.Message, text: str) -> None:
        """Discord tells the bot of every deletion (raw message-delete events: StreamedReply.vanished)."""

    async def settle(self) -> None:
        """Every message of the reply is a message already."""

    def message_id(self, message: discord.Message) -> str:
        return str(message.id)
