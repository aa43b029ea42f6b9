"""Slash commands and button presses carried out by bot.commands, and their replies shown on Discord."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.commands import CommandReply, friendly_error, run_command
from bot.discord.buttons import buttons_view
from bot.discord.limits import MESSAGE_LIMIT
from bot.discord.speakers import speaker_for_interaction
from bot.splitting import split_message
from bot.streaming import EMPTY_REPLY

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot

log = logging.getLogger(__name__)

NOT_AVAILABLE = "That command isn't available."


async def answer_command(
    bot: OwnchatBot, interaction: discord.Interaction, name: str, args: str = "", *, ephemeral: bool
) -> None:
    """Run one slash command and answer it; ephemeral answers are seen by the caller only."""
    # Discord waits 3 s for an answer; the brain may take longer (and retries while it is away)
    await interaction.response.defer(ephemeral=ephemeral, thinking=True)
    reply = await _run(bot, interaction, name, args)
    pieces = split_message(reply.text, MESSAGE_LIMIT) or [EMPTY_REPLY]
    for index, piece in enumerate(pieces):
        view = buttons_view(reply.buttons, interaction.user.id) if index == len(pieces) - 1 else None
        await _follow_up(interaction, piece, view, ephemeral=ephemeral)


async def answer_button(bot: OwnchatBot, interaction: discord.Interaction, name: str, args: str) -> None:
    """Run a button's command and show its answer in place of the message that offered the button."""
    await interaction.response.defer()
    reply = await _run(bot, interaction, name, args)
    pieces = split_message(reply.text, MESSAGE_LIMIT) or [EMPTY_REPLY]
    view = buttons_view(reply.buttons, interaction.user.id)
    await interaction.edit_original_response(content=pieces[0], view=view if len(pieces) == 1 else None)
    ephemeral = bool(interaction.message and interaction.message.flags.ephemeral)
    for index, piece in enumerate(pieces[1:], start=1):
        await _follow_up(interaction, piece, view if index == len(pieces) - 1 else None, ephemeral=ephemeral)


async def _follow_up(
    interaction: discord.Interaction, text: str, view: discord.ui.View | None, *, ephemeral: bool
) -> None:
    # Webhook.send refuses view=None: a message without buttons is sent without the argument
    if view is None:
        await interaction.followup.send(text, ephemeral=ephemeral)
    else:
        await interaction.followup.send(text, ephemeral=ephemeral, view=view)


async def _run(bot: OwnchatBot, interaction: discord.Interaction, name: str, args: str) -> CommandReply:
    who = speaker_for_interaction(interaction, bot.config.operators)
    try:
        reply = await run_command(bot.brain, who, name, args)
    except Exception as exc:  # the user gets a sentence, the log gets the traceback
        log.exception("/%s failed", name)
        return CommandReply(friendly_error(exc))
    return reply if reply is not None else CommandReply(NOT_AVAILABLE)
