"""A streamed reply's Screen on Discord: in a guild the answer replies to its question, in a DM it follows it."""

from __future__ import annotations

import discord


class ChannelScreen:
    def __init__(self, source: discord.Message):
        self.source = source

    async def post(self, text: str) -> discord.Message:
        if self.source.guild is None:
            return await self.source.channel.send(text)
        # in a guild, a reply keeps the answer attached to its question (and forms the reply chain)
        return await self.source.reply(text)

    async def edit(self, message: discord.Message, text: str) -> discord.Message:
        return await message.edit(content=text)
