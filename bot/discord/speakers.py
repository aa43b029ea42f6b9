"""Who speaks, and where, in the brain's platform-neutral terms.

Ids are namespaced by platform ("discord"), so one Redis serves every adapter. A thread is a chat of
its own; a DM is a direct chat, everything else a group chat.
"""

from __future__ import annotations

import discord

from bot.commands import Speaker
from brain.api_models import ChatKind

PLATFORM = "discord"


def speaker_for_message(message: discord.Message, operators: list[int]) -> Speaker:
    author = message.author
    is_admin = True
    if message.guild is not None and isinstance(author, discord.Member):
        is_admin = _is_admin(message.channel.permissions_for(author))
    return Speaker(
        platform=PLATFORM,
        user_id=str(author.id),
        chat_id=str(message.channel.id),
        chat_kind=ChatKind.direct if message.guild is None else ChatKind.group,
        display_name=author.display_name[:128],
        is_chat_admin=is_admin,
        is_operator=author.id in operators,
    )


def speaker_for_interaction(interaction: discord.Interaction, operators: list[int]) -> Speaker:
    user = interaction.user
    in_guild = interaction.guild_id is not None
    return Speaker(
        platform=PLATFORM,
        user_id=str(user.id),
        chat_id=str(interaction.channel_id),
        chat_kind=ChatKind.group if in_guild else ChatKind.direct,
        display_name=user.display_name[:128],
        is_chat_admin=_is_admin(interaction.permissions) if in_guild else True,
        is_operator=user.id in operators,
    )


def _is_admin(permissions: discord.Permissions) -> bool:
    # those who may manage the channel may choose who the bot is in it
    return permissions.manage_channels or permissions.manage_guild or permissions.administrator
