"""A streamed reply's Screen for an interaction (a slash command or a message's app command): its first message
takes the place of Discord's "thinking…", the rest follow it as followups, all edited through the interaction's
webhook (which Discord keeps open for 15 minutes, far longer than a reply streams)."""

from __future__ import annotations

import logging

import discord

from bot.streaming import MessageGone

log = logging.getLogger(__name__)


class FollowupScreen:
    def __init__(self, interaction: discord.Interaction):
        self.interaction = interaction

    async def ready(self) -> None:
        """discord.py waits for Discord's buckets inside each webhook call."""

    async def post(self, text: str) -> discord.WebhookMessage:
        return await self.interaction.followup.send(text, wait=True)

    async def edit(self, message: discord.WebhookMessage, text: str) -> None:
        try:
            await message.edit(content=text)
        except (discord.NotFound, discord.Forbidden) as exc:
            raise MessageGone(str(exc)) from exc

    async def delete(self, message: discord.WebhookMessage) -> None:
        try:
            await message.delete()
        except discord.HTTPException as exc:
            log.info("could not delete message %s: %s", message.id, exc)

    async def still_there(self, message: discord.Message, text: str) -> None:
        """Discord tells the bot of every deletion (raw message-delete events: StreamedReply.vanished)."""

    async def settle(self) -> None:
        """Every message of the reply is a message already."""

    def message_id(self, message: discord.WebhookMessage) -> str:
        return str(message.id)
