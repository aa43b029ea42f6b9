"""Buttons that run a command line (a CommandReply's buttons), for the member they were offered to only.

Everything a button needs lives in its custom_id ("ownchat:<user id>:<command line>"), so a button
still works after the bot restarts; discord.py routes it here through a DynamicItem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from bot.commands import NOT_YOURS, Button, may_press, parse_command
from bot.discord.limits import BUTTON_LABEL_LIMIT, BUTTONS_PER_MESSAGE, CUSTOM_ID_LIMIT

if TYPE_CHECKING:
    from bot.discord.app import OwnchatBot


def custom_id(owner_id: int, command: str) -> str:
    return f"ownchat:{owner_id}:{command}"


class CommandButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"ownchat:(?P<owner>[0-9]+):(?P<command>/.+)",
):
    def __init__(self, owner_id: int, label: str, command: str):
        style = discord.ButtonStyle.danger if _is_destructive(command) else discord.ButtonStyle.primary
        label = label[:BUTTON_LABEL_LIMIT]
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=custom_id(owner_id, command)))
        self.owner_id = owner_id
        self.command = command

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: Any, /
    ) -> CommandButton:
        return cls(int(match["owner"]), getattr(item, "label", None) or "", match["command"])

    async def callback(self, interaction: discord.Interaction) -> None:
        if not may_press(str(self.owner_id), str(interaction.user.id)):
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return
        parsed = parse_command(self.command)
        if parsed is None:
            return
        bot: OwnchatBot = interaction.client  # type: ignore[assignment]
        await bot.answer_button(interaction, *parsed)


def buttons_view(buttons: list[Button], owner_id: int) -> discord.ui.View | None:
    """A view of the buttons Discord allows on one message; None when there are none to show."""
    items = [
        CommandButton(owner_id, b.label, b.command)
        for b in buttons
        if len(custom_id(owner_id, b.command)) <= CUSTOM_ID_LIMIT
    ][:BUTTONS_PER_MESSAGE]
    if not items:
        return None
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    # Presses reach CommandButton through the dynamic-item registry, so the view is only a layout: a
    # stopped view is not kept in memory (nor given discord.py's 15-minute timer for ephemeral ones).
    view.stop()
    return view


def _is_destructive(command: str) -> bool:
    return command.startswith(("/forget", "/optout delete"))
