"""Consent and personal data: /optin, /optout, /forget, /reset, /remember, /memory, /privacy, and /help.

Answers here are about one person, so only that person sees them (ephemeral).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.responding import answer_command
from brain.api_models import MAX_FACT_CHARS

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot

# Discord itself refuses a fact longer than the brain keeps
FactText = app_commands.Range[str, 1, MAX_FACT_CHARS]


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
    @app_commands.describe(fact="Something about you, in a sentence: I'm vegetarian and live in Porto")
    async def remember(self, interaction: discord.Interaction, fact: FactText) -> None:
        """Pin a fact about you that I keep in mind"""
        await answer_command(self.bot, interaction, "remember", fact, ephemeral=True)

    @app_commands.command()
    @app_commands.describe(forget="Forget fact number N of the list", clear="Forget every fact listed here")
    async def memory(
        self, interaction: discord.Interaction, forget: app_commands.Range[int, 1] | None = None, clear: bool = False
    ) -> None:
        """What I remember of you here, and forget facts"""
        args = "clear" if clear else f"forget {forget}" if forget is not None else ""
        await answer_command(self.bot, interaction, "memory", args, ephemeral=True)

    @app_commands.command()
    @app_commands.describe(agree="Yes: now and then I may answer twice and ask which reply you prefer")
    async def compare(self, interaction: discord.Interaction, agree: bool | None = None) -> None:
        """Let me ask, now and then, which of two replies you prefer"""
        args = "" if agree is None else "yes" if agree else "no"
        await answer_command(self.bot, interaction, "compare", args, ephemeral=True)

    @app_commands.command()
    async def privacy(self, interaction: discord.Interaction) -> None:
        """What I store and why"""
        await answer_command(self.bot, interaction, "privacy", ephemeral=True)

    @app_commands.command()
    async def help(self, interaction: discord.Interaction) -> None:
        """What I can do"""
        await answer_command(self.bot, interaction, "help", ephemeral=True)
