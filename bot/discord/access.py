"""Where the bot may speak on Discord: allowed guilds, channels and roles from the settings.

Direct messages are always allowed. In a guild, every configured list narrows: the guild must be
listed (when any are), the channel (a thread counts as its parent channel) must be listed or be a
reply channel (when any channels are listed), and the member must hold a listed role (when any are).
"""

from __future__ import annotations

import discord

from bot.settings import DiscordSettings


class Access:
    def __init__(self, config: DiscordSettings):
        self.guilds = frozenset(config.allowed_guilds)
        self.channels = frozenset(config.allowed_channels)
        self.roles = frozenset(config.allowed_roles)
        self.reply_channels = frozenset(config.reply_channels)

    def allows(self, guild_id: int | None, channel_ids: set[int], role_ids: set[int]) -> bool:
        if guild_id is None:
            return True
        if self.guilds and guild_id not in self.guilds:
            return False
        if self.channels and not channel_ids & (self.channels | self.reply_channels):
            return False
        return not self.roles or bool(role_ids & self.roles)

    def allows_message(self, message: discord.Message) -> bool:
        guild_id = message.guild.id if message.guild else None
        return self.allows(guild_id, channel_ids(message.channel), role_ids(message.author))

    def allows_interaction(self, interaction: discord.Interaction) -> bool:
        channel_set = channel_ids(interaction.channel) if interaction.channel else set()
        if interaction.channel_id is not None:
            channel_set.add(interaction.channel_id)
        return self.allows(interaction.guild_id, channel_set, role_ids(interaction.user))

    def answers_every_message(self, channel: object) -> bool:
        return bool(channel_ids(channel) & self.reply_channels)


def channel_ids(channel: object) -> set[int]:
    """The channel's id, and for a thread its parent's id too: a thread inherits its channel's rules."""
    own = getattr(channel, "id", None)
    ids = {own} if isinstance(own, int) else set()
    parent = getattr(channel, "parent_id", None)
    if isinstance(parent, int):
        ids.add(parent)
    return ids


def role_ids(user: discord.abc.User) -> set[int]:
    return {role.id for role in getattr(user, "roles", [])}
