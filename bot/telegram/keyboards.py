"""Inline keyboards for a CommandReply's buttons, and reading back which button was pressed."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.commands import Button

CALLBACK_DATA_LIMIT = 64  # bytes, set by Telegram
BUTTONS_PER_ROW = 2


def owned_by_asker(button: Button) -> bool:
    """Confirmations act on the presser's own data, so only the person who asked may press them.

    A persona keyboard is the exception: anyone in the chat may pick (the admin rule still applies).
    """
    return not button.command.startswith("/persona ")


def callback_data(button: Button, asker_id: int) -> str | None:
    data = f"{button.command}|{asker_id}" if owned_by_asker(button) else button.command
    # a button whose command does not fit is left out; the reply's text says how to type it
    return data if len(data.encode()) <= CALLBACK_DATA_LIMIT else None


def keyboard(buttons: list[Button], asker_id: int) -> InlineKeyboardMarkup | None:
    keys = [
        InlineKeyboardButton(button.label, callback_data=data)
        for button in buttons
        if (data := callback_data(button, asker_id)) is not None
    ]
    if not keys:
        return None
    return InlineKeyboardMarkup([keys[i : i + BUTTONS_PER_ROW] for i in range(0, len(keys), BUTTONS_PER_ROW)])


def pressed(data: str) -> tuple[str, int | None]:
    """(command line, id of the only user allowed to press it, or None for anyone)."""
    command, _, owner = data.rpartition("|")
    if command and owner.isdigit():
        return command, int(owner)
    return data, None
