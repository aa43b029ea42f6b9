"""/persona: show or pick who the bot is, with the brain's presets offered as you type."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import BrainClient, BrainError
from bot.discord.limits import AUTOCOMPLETE_WAIT_S, CHOICE_NAME_LIMIT, CHOICES_LIMIT
from bot.discord.responding import answer_command
from brain.api_models import Persona as PersonaPreset

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot

log = logging.getLogger(__name__)


class PresetCache:
    """The brain's presets, kept a while: Discord drops an autocompletion not answered in time."""

    def __init__(self, brain: BrainClient, *, ttl_s: float = 60.0, wait_s: float = AUTOCOMPLETE_WAIT_S):
        self.brain = brain
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self._presets: list[PersonaPreset] = []
        self._fetched_at = float("-inf")

    async def get(self) -> list[PersonaPreset]:
        now = asyncio.get_running_loop().time()
        if now - self._fetched_at >= self.ttl_s:
            try:
                self._presets = await asyncio.wait_for(self.brain.personas(), self.wait_s)
                self._fetched_at = now
            except (BrainError, asyncio.TimeoutError) as exc:
                log.warning("could not list persona presets: %s", exc)
        return self._presets


class PersonaCog(commands.Cog, name="Persona"):
    def __init__(self, bot: OwnchatBot):
        self.bot = bot
        self.presets = PresetCache(bot.brain)

    @app_commands.command()
    @app_commands.describe(name="One of my preset personas", custom="Or describe who I should be, in your words")
    async def persona(
        self, interaction: discord.Interaction, name: str | None = None, custom: str | None = None
    ) -> None:
        """Show or pick who I am"""
        args = f"custom {custom}" if custom else (name or "")
        # picking one is news for the whole chat; the list of presets is for the caller only
        await answer_command(self.bot, interaction, "persona", args, ephemeral=not args)

    @persona.autocomplete("name")
    async def _preset_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        typed = current.lower().strip()
        return [
            app_commands.Choice(name=_choice_label(p), value=p.name)
            for p in await self.presets.get()
            if typed in p.name or typed in p.description.lower()
        ][:CHOICES_LIMIT]


def _choice_label(preset: PersonaPreset) -> str:
    label = f"{preset.name}: {preset.description}" if preset.description else preset.name
    return label if len(label) <= CHOICE_NAME_LIMIT else label[: CHOICE_NAME_LIMIT - 1] + "…"
