"""Ratings and /retry: reactions on the bot's replies rate them; /retry, or "Answer again" on one of its replies,
asks for a second reply to the same message (the first one stays).

Reactions arrive as raw gateway events, so a reply the bot no longer holds in its message cache (it restarted, or
another replica posted it) is rated all the same; the brain knows which turn a message shows.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from contextlib import suppress
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import answering
from bot.client import BrainError
from bot.commands import Speaker, friendly_error
from bot.discord.followups import FollowupScreen
from bot.discord.limits import MESSAGE_LIMIT
from bot.discord.speakers import PLATFORM, speaker_for_interaction
from bot.feedback import REMOVED, UNKNOWN_TURN, ReactionRules, SettledRatings, rate, retry_request
from bot.streaming import StreamedReply
from brain.api_models import ChatKind

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot

log = logging.getLogger(__name__)

NOT_MINE = "Pick one of my replies: I can answer again only what I answered."
ANSWER_AGAIN = "Answer again"


class Feedback(commands.Cog):
    def __init__(self, bot: OwnchatBot):
        self.bot = bot
        self.rules = ReactionRules.from_settings(bot.config.reactions)
        # one member's reactions on one message coalesce: the newest reaches the brain, once they settle
        self.ratings = SettledRatings()
        # who wrote the messages reacted on (a removal does not say), so that a flood of removals reads each once
        self._authors: Authors = Authors()
        # discord.py takes a message's app command only from the tree, not from a cog's methods
        self.answer_again = app_commands.ContextMenu(name=ANSWER_AGAIN, callback=self._answer_again)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.answer_again)

    # ratings

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, event: discord.RawReactionActionEvent) -> None:
        me = self.bot.user
        rating = self.rules.rating_of(_name(event.emoji))
        if rating is None or me is None or event.user_id == me.id or (event.member and event.member.bot):
            return
        if event.message_author_id is not None:
            self._authors.remember(event.message_id, event.message_author_id)
            if event.message_author_id != me.id:
                return  # a reaction on someone else's message rates nothing
        self.ratings.give((event.message_id, event.user_id), lambda: self._rate(event, rating))

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, event: discord.RawReactionActionEvent) -> None:
        me = self.bot.user
        if me is None or event.user_id == me.id or not self.rules.rates(_name(event.emoji)):
            return
        if self._authors.get(event.message_id) not in (None, me.id):
            return
        self.ratings.give((event.message_id, event.user_id), lambda: self._rate_what_is_held(event, me.id))

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.answer_again.name, type=self.answer_again.type)
        await self.ratings.aclose()

    async def _rate_what_is_held(self, event: discord.RawReactionActionEvent, me: int) -> None:
        # Discord lets a member hold 👍 and 👎 at once: taking one back leaves the rating the others give
        held = await self._still_held(event, me)
        rating = self.rules.held(held) if held is not None else None
        if rating is not None:
            await self._rate(event, rating)

    async def _still_held(self, event: discord.RawReactionActionEvent, me: int) -> set[str] | None:
        """The rating reactions the member still has on the message; None when it is not the bot's."""
        channel = self.bot.get_partial_messageable(event.channel_id, guild_id=event.guild_id)
        try:
            message = await channel.fetch_message(event.message_id)
        except discord.HTTPException as exc:
            log.info("could not read message %s to see what is still rated: %s", event.message_id, exc)
            return set()
        self._authors.remember(message.id, message.author.id)
        if message.author.id != me:
            return None
        held = set()
        for reaction in message.reactions:
            name = _name(reaction.emoji)
            if reaction.count and self.rules.rates(name) and await _has_reacted(reaction, event.user_id):
                held.add(name)
        return held

    async def _rate(self, event: discord.RawReactionActionEvent, rating: int) -> None:
        """Pass a rating on; a 429 is raised, for SettledRatings to wait out."""
        rater = Speaker(
            platform=PLATFORM,
            user_id=str(event.user_id),
            chat_id=str(event.channel_id),
            chat_kind=ChatKind.group if event.guild_id is not None else ChatKind.direct,
        )
        try:
            # None: the message shows none of the brain's replies (or too old a one)
            await rate(self.bot.brain, rater, rating, kind="reaction", message_id=str(event.message_id))
        except BrainError as exc:
            if exc.status == 429:
                raise
            verb = "take back" if rating == REMOVED else "pass on"
            log.warning("could not %s a rating in channel %s: %s %s", verb, event.channel_id, exc.code, exc.message)

    # answering again

    @app_commands.command()
    async def retry(self, interaction: discord.Interaction) -> None:
        """Answer my last reply here again (the first answer stays)"""
        await self._retry(interaction, of_message=None)

    async def _answer_again(self, interaction: discord.Interaction, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.id != me.id:
            await interaction.response.send_message(NOT_MINE, ephemeral=True)
            return
        await self._retry(interaction, of_message=str(message.id))

    async def _retry(self, interaction: discord.Interaction, *, of_message: str | None) -> None:
        """Stream a second reply to the member's message as the interaction's answer."""
        who = speaker_for_interaction(interaction, self.bot.config.operators)
        # an interaction's snowflake is unique: asked again, the brain stores the second reply once
        request = retry_request(who, of_message=of_message, request_id=str(interaction.id))
        await interaction.response.defer(thinking=True)
        screen = FollowupScreen(interaction)
        try:
            async with StreamedReply(screen, limit=MESSAGE_LIMIT, interval_s=self.bot.config.edit_interval_s) as reply:
                window_s = self.bot.settings.bot.retry_window_s
                await answering.answer(
                    self.bot.brain,
                    request,
                    reply,
                    window_s=window_s,
                    refused=functools.partial(_privately, interaction),
                )
        except discord.HTTPException:
            log.exception("could not show a second reply in channel %s", interaction.channel_id)
        except Exception as exc:  # the user gets a sentence, the log gets the traceback
            log.exception("answering again in channel %s failed", interaction.channel_id)
            with suppress(discord.HTTPException):
                await screen.post(friendly_error(exc))


async def _privately(interaction: discord.Interaction, error: BrainError) -> bool:
    """ "No reply of yours here to answer again" concerns the member who asked only: it is shown to them alone."""
    if (error.status, error.code) != (404, UNKNOWN_TURN):
        return False
    with suppress(discord.HTTPException):
        await interaction.delete_original_response()  # the "thinking…" that everyone sees
    await interaction.followup.send(friendly_error(error), ephemeral=True)
    return True


class Authors:
    """The authors of the last messages reacted on: a message's author never changes."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._of: OrderedDict[int, int] = OrderedDict()

    def remember(self, message_id: int, author_id: int) -> None:
        self._of[message_id] = author_id
        self._of.move_to_end(message_id)
        while len(self._of) > self.size:
            self._of.popitem(last=False)

    def get(self, message_id: int) -> int | None:
        return self._of.get(message_id)


def _name(emoji: discord.PartialEmoji | discord.Emoji | str) -> str:
    """A Unicode emoji as itself, a custom one by its name (as the settings list them)."""
    return emoji if isinstance(emoji, str) else emoji.name or ""


async def _has_reacted(reaction: discord.Reaction, user_id: int) -> bool:
    """Whether `user_id` is among the reaction's users: Discord lists them by id, so one call asks for the first
    user from that id on."""
    async for user in reaction.users(limit=1, after=discord.Object(id=user_id - 1)):
        return user.id == user_id
    return False
