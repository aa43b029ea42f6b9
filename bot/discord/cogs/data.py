"""Consent and personal data: /optin, /optout, /forget, /reset, /memory, /privacy, and /help.

Answers here are about one person, so only that person sees them (ephemeral).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.responding import answer_command

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot


class Data(commands.Cog):
    def __init__(self, bot: OwnchatBot):
        self.bot = bot

    @app_commands.command()
    async def optin(self, interaction: discord.Interaction) -> None:
        """Let me learn from our chats (I say what I keep first)"""
        await answer_command(self.bot, interaction, "optin", ephemeral=True)

    @app_commands.command()
    @app_commands.describe(delete_logs="Also delete the conversations already kept for training")
    async def optout(self, interaction: discord.Interaction, delete_logs: bool = False) -> None:
        """Stop learning from our chats"""
        await answer_command(self.bot, interaction, "optout", "delete" if delete_logs else "", ephemeral=True)

    @app_commands.command()
    async def forget(self, interaction: discord.Interaction) -> None:
        """Delete everything I keep about you (asks first)"""
        await answer_command(self.bot, interaction, "forget", ephemeral=True)

    @app_commands.command()
    async def reset(self, interaction: discord.Interaction) -> None:
        """Clear my memory of this chat"""
        await answer_command(self.bot, interaction, "reset", ephemeral=True)

    @app_commands.command()
    async def memory(self, interaction: discord.Interaction) -> None:
        """What I remember of this chat"""
        await answer_command(self.bot, interaction, "memory", ephemeral=True)

    @app_commands.command()
    async def privacy(self, interaction: discord.Interaction) -> None:
        """What I store and why"""
        await answer_command(self.bot, interaction, "privacy", ephemeral=True)

    @app_commands.command()
    async def help(self, interaction: discord.Interaction) -> None:
        """What I can do"""
        await answer_command(self.bot, interaction, "help", ephemeral=True)
