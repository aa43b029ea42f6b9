"""Operator commands. For anyone not listed in bot.discord.operators they do nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.responding import answer_command

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot


class Admin(commands.Cog):
    def __init__(self, bot: OwnchatBot):
        self.bot = bot

    @app_commands.command()
    async def stats(self, interaction: discord.Interaction) -> None:
        """Usage figures (operators only)"""
        await answer_command(self.bot, interaction, "stats", ephemeral=True)
