"""A reply shown while it is generated: one message edited as text arrives, more past 2,000 characters."""

from __future__ import annotations

import asyncio

import discord

from bot.discord.text import split_message

EMPTY_REPLY = "…"


class StreamedReply:
    """Posts the reply on its first words, then edits it at most once per `interval_s` seconds.

    Edits are throttled by time, not by count, so a fast model costs no more REST calls than a slow
    one and Discord's per-channel edit limits are respected. The full text is always shown at the end.
    """

    def __init__(self, source: discord.Message, *, interval_s: float):
        self.source = source
        self.interval_s = interval_s
        self.text = ""
        self.messages: list[discord.Message] = []
        self._shown: list[str] = []
        self._last_shown = float("-inf")

    @property
    def started(self) -> bool:
        return bool(self.messages)

    async def add(self, delta: str) -> None:
        self.text += delta
        now = asyncio.get_running_loop().time()
        if self.text.strip() and now - self._last_shown >= self.interval_s:
            await self._show(self.text)

    async def finish(self, text: str) -> None:
        """Show the whole reply as the brain recorded it."""
        await self._show(text if text.strip() else EMPTY_REPLY)

    async def fail(self, notice: str) -> None:
        """Tell the user why the reply stopped (or never started), below whatever was already shown."""
        if self.started and self.text.strip():
            await self._show(self.text)
        await self._post(notice)

    async def _show(self, text: str) -> None:
        for index, piece in enumerate(split_message(text)):
            if not piece.strip():
                continue  # Discord refuses an empty message; whitespace carries nothing to read
            if index < len(self.messages):
                if self._shown[index] != piece:
                    await self.messages[index].edit(content=piece)
                    self._shown[index] = piece
            else:
                self.messages.append(await self._post(piece))
                self._shown.append(piece)
        self._last_shown = asyncio.get_running_loop().time()

    async def _post(self, text: str) -> discord.Message:
        if self.source.guild is None:
            return await self.source.channel.send(text)
        # in a guild, a reply keeps the answer attached to its question (and forms the reply chain)
        return await self.source.reply(text)
