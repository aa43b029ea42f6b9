"""The Discord bot: a commands.Bot given its brain client and settings, run by `bot discord`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import BrainClient
from bot.discord import private_api
from bot.discord.access import Access
from bot.discord.buttons import CommandButton
from bot.discord.cogs.admin import Admin
from bot.discord.cogs.chat import Chat
from bot.discord.cogs.data import Data
from bot.discord.cogs.feedback import Feedback
from bot.discord.cogs.persona import PersonaCog
from bot.discord.comparison import ComparisonButton
from bot.discord.responding import answer_button
from bot.discord.waits import ChannelWaits, ReplyLimits
from bot.settings import DiscordSettings
from brain.refusals import Refusal
from brain.settings import Settings

log = logging.getLogger(__name__)

NOT_HERE = "I'm not active in this channel."


def required_intents() -> discord.Intents:
    intents = discord.Intents.default()
    # privileged: enable "Message Content Intent" in the developer portal, or Discord closes with 4014
    intents.message_content = True
    return intents


class OwnchatTree(app_commands.CommandTree):
    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Slash commands work only where the bot may speak (see bot.discord.access)."""
        bot: OwnchatBot = self.client  # type: ignore[assignment]
        if bot.access.allows_interaction(interaction):
            return True
        if interaction.type is discord.InteractionType.application_command:
            # only the caller sees this; without an answer Discord would tell them the bot failed
            await interaction.response.send_message(NOT_HERE, ephemeral=True)
        return False


class OwnchatBot(commands.Bot):
    def __init__(self, settings: Settings, brain: BrainClient, **options: Any):
        # a streamed reply waits out Discord's rate limits itself, so that it redraws with the newest text after one:
        # its calls read Discord's answers through the client's HTTP trace (bot.discord.waits)
        reply_limits = ReplyLimits()
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            tree_cls=OwnchatTree,
            intents=required_intents(),
            # a model's words must never ping @everyone, a role or a stranger; the asker may be
            allowed_mentions=discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True),
            http_trace=reply_limits.trace,
            **options,
        )
        self.settings = settings
        self.config: DiscordSettings = settings.bot.discord
        self.brain = brain
        self.access = Access(self.config)
        self.reply_limits = reply_limits
        self.waits = ChannelWaits()
        # a proxy or a Discord-compatible API elsewhere (the tests' local Discord): taken while the bot runs
        endpoints = private_api.Endpoints(self.config.api_base, self.config.gateway_url)
        self.endpoints = endpoints if endpoints.api_base or endpoints.gateway_url else None
        self._taken: private_api.Endpoints | None = None

    async def login(self, token: str) -> None:
        if self.endpoints is not None and self._taken is None:
            private_api.take(self.endpoints)
            self._taken = self.endpoints
        await super().login(token)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            taken, self._taken = self._taken, None
            if taken is not None:
                private_api.give_back(taken)

    async def setup_hook(self) -> None:
        if self.endpoints is not None and self.endpoints.api_base and not self.endpoints.gateway_url:
            # a Discord-compatible API elsewhere names its gateway, as Discord does
            await private_api.use_named_gateway(self, self.endpoints)
        for cog in (Chat(self), PersonaCog(self), Data(self), Admin(self), Feedback(self)):
            await self.add_cog(cog)
        self.add_dynamic_items(CommandButton, ComparisonButton)
        synced = await self.tree.sync()
        log.info("synced %d slash commands", len(synced))

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: the Chat cog listens to messages and slash commands do the rest."""

    async def answer_button(self, interaction: discord.Interaction, name: str, args: str) -> None:
        """Run a pressed button's command and show its answer (buttons.py leaves the answering to the bot)."""
        await answer_button(self, interaction, name, args)


class ShardedOwnchatBot(OwnchatBot, commands.AutoShardedBot):
    """The same bot over several gateway connections (bot.discord.shard_count)."""


def make_bot(settings: Settings, brain: BrainClient, **options: Any) -> OwnchatBot:
    """One connection by default; with `shard_count` set, that many shards (0: as many as Discord advises).

    `options` go to discord.py's client as they are.
    """
    config = settings.bot.discord
    if config.shard_count is None:
        return OwnchatBot(settings, brain, **options)
    return ShardedOwnchatBot(settings, brain, shard_count=config.shard_count or None, **options)


def run_discord(settings: Settings) -> None:
    """Run the Discord bot until interrupted."""
    token = settings.secrets.discord_token
    if token is None:
        raise Refusal("no Discord token: set OWNCHAT_DISCORD_TOKEN to the bot token from the developer portal")
    discord.utils.setup_logging()
    try:
        asyncio.run(serve(settings, token.get_secret_value()))
    except KeyboardInterrupt:
        pass
    except discord.PrivilegedIntentsRequired:
        raise Refusal(
            "Discord refused the connection: enable 'Message Content Intent' under Bot > Privileged Gateway "
            "Intents in the developer portal"
        ) from None
    except discord.LoginFailure:
        raise Refusal("Discord refused the token in OWNCHAT_DISCORD_TOKEN") from None


async def serve(settings: Settings, token: str) -> None:
    async with BrainClient.from_settings(settings) as brain:
        async with make_bot(settings, brain) as bot:
            await bot.start(token)
