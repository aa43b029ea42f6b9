""" "Which reply do you prefer?" on Discord: the second reply under the question, with two buttons.

Everything a button needs lives in its custom_id ("ownchat-cmp:<owner>:<chosen turn>:<rejected turn>", 66
characters of the 100 allowed), so a press still works after the bot restarts; discord.py routes it here
through a DynamicItem. Only the member who asked may answer; the brain checks it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from bot.comparison import NOT_YOURS, PREFER_FIRST, PREFER_SECOND, QUESTION, choose, second_reply
from bot.discord.limits import MESSAGE_LIMIT
from bot.discord.speakers import speaker_for_interaction
from bot.splitting import split_message
from brain.api_models import ChatReply, ChatRequest

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot


class ComparisonButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"ownchat-cmp:(?P<owner>[0-9]+):(?P<chosen>[0-9a-f]{16}):(?P<rejected>[0-9a-f]{16})",
):
    def __init__(self, owner_id: int, chosen: str, rejected: str, label: str):
        custom_id = f"ownchat-cmp:{owner_id}:{chosen}:{rejected}"
        super().__init__(discord.ui.Button(label=label, style=discord.ButtonStyle.primary, custom_id=custom_id))
        self.owner_id, self.chosen, self.rejected = owner_id, chosen, rejected

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: Any, /
    ) -> ComparisonButton:
        label = getattr(item, "label", None) or ""
        return cls(int(match["owner"]), match["chosen"], match["rejected"], label)

    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return
        bot: OwnchatBot = interaction.client  # type: ignore[assignment]
        await interaction.response.defer()
        who = speaker_for_interaction(interaction, bot.config.operators)
        said, answered = await choose(bot.brain, who, self.chosen, self.rejected)
        if answered:  # a question answered once
            await interaction.edit_original_response(view=None)
        await interaction.followup.send(said, ephemeral=True)


def comparison_view(owner_id: int, first: str, second: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ComparisonButton(owner_id, first, second, PREFER_FIRST))
    view.add_item(ComparisonButton(owner_id, second, first, PREFER_SECOND))
    view.stop()  # presses come through the dynamic-item registry: the view is only a layout
    return view


async def offer_comparison(
    bot: OwnchatBot, message: discord.Message, request: ChatRequest, first: ChatReply | None
) -> None:
    """When the brain asked to compare ``first``, show a second reply under the question, with the two buttons."""
    second = await second_reply(bot.brain, request, first)
    if second is None or first is None or first.turn_id is None or second.turn_id is None:
        return
    pieces = split_message(f"{QUESTION}\n\n{second.reply}", MESSAGE_LIMIT)
    for piece in pieces[:-1]:
        await message.channel.send(piece)
    await message.channel.send(pieces[-1], view=comparison_view(message.author.id, first.turn_id, second.turn_id))
