"""A streamed reply's Screen on Discord: in a guild the answer replies to its question, in a DM it follows it.

discord.py keeps Discord's rate-limit buckets itself (bot.discord.limits) and waits inside each call, so the
screen is always ready; a message that vanished, or that Discord will not let the bot edit, is gone.
"""

from __future__ import annotations

import logging

import discord

from bot.streaming import MessageGone

log = logging.getLogger(__name__)


class ChannelScreen:
    def __init__(self, source: discord.Message):
        self.source = source

    async def ready(self) -> None:
        """discord.py waits for Discord's buckets inside each call."""

    async def post(self, text: str) -> discord.Message:
        if self.source.guild is None:
            return await self.source.channel.send(text)
        # in a guild, a reply keeps the answer attached to its question (and forms the reply chain); a question
        # deleted meanwhile leaves the answer standing on its own rather than failing it
        return await self.source.channel.send(text, reference=self.source.to_reference(fail_if_not_exists=False))

    async def edit(self, message: discord.Message, text: str) -> None:
        try:
            await message.edit(content=text)
        except (discord.NotFound, discord.Forbidden) as exc:
            # 10008 Unknown Message (deleted), or 403: the bot may not edit it any more
            raise MessageGone(str(exc)) from exc

    async def delete(self, message: discord.Message) -> None:
        try:
            await message.delete()
        except discord.HTTPException as exc:
            log.info("could not delete message %s: %s", message.id, exc)

    def message_id(self, message: discord.Message) -> str:
        return str(message.id)
