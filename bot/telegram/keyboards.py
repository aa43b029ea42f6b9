"""Inline keyboards for a CommandReply's buttons, and reading back which button was pressed.

A button's callback_data is its command line and the id of the member it was offered to ("/optin yes|42"),
so a press can be checked against bot.commands.may_press and still works after the bot restarts. The rating
buttons under a reply (bot.telegram.rating_buttons) are anyone's to press; their data is the rating alone
("rate:1"), since the message they sit under names the reply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import TelegramError

from bot.commands import Button, parse_command
from bot.feedback import DISLIKE, LIKE
from bot.telegram.limits import CALLBACK_DATA_LIMIT

log = logging.getLogger(__name__)

BUTTONS_PER_ROW = 2
RATING_PREFIX = "rate:"
RATING_PATTERN = rf"^{RATING_PREFIX}(-1|1)$"


@dataclass(frozen=True)
class Pressed:
    name: str
    args: str
    owner_id: str


def callback_data(button: Button, owner_id: int) -> str | None:
    data = f"{button.command}|{owner_id}"
    # a button whose command does not fit is left out; the reply's text says how to type it
    return data if len(data.encode()) <= CALLBACK_DATA_LIMIT else None


def keyboard(buttons: list[Button], owner_id: int) -> InlineKeyboardMarkup | None:
    keys = [
        InlineKeyboardButton(button.label, callback_data=data)
        for button in buttons
        if (data := callback_data(button, owner_id)) is not None
    ]
    if not keys:
        return None
    return InlineKeyboardMarkup([keys[i : i + BUTTONS_PER_ROW] for i in range(0, len(keys), BUTTONS_PER_ROW)])


def rating_keyboard(like: str, dislike: str) -> InlineKeyboardMarkup:
    """The 👍/👎 buttons under a reply, labelled with the first like and dislike reactions of the settings."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(like, callback_data=f"{RATING_PREFIX}{LIKE}"),
                InlineKeyboardButton(dislike, callback_data=f"{RATING_PREFIX}{DISLIKE}"),
            ]
        ]
    )


def rating_pressed(data: str) -> int | None:
    """The rating a rating button gives; None for data this bot did not write."""
    value = data.removeprefix(RATING_PREFIX)
    return LIKE if value == str(LIKE) else DISLIKE if value == str(DISLIKE) else None


def pressed(data: str) -> Pressed | None:
    """The command and owner of a pressed button; None for data this bot did not write."""
    command, _, owner = data.rpartition("|")
    parsed = parse_command(command)
    return Pressed(*parsed, owner) if parsed and owner.isdigit() else None


async def remove_keyboard(query: CallbackQuery) -> None:
    """Take a pressed keyboard away, so that nobody presses it twice."""
    try:
        await query.edit_message_reply_markup(reply_markup=None)
    except TelegramError as exc:
        log.info("could not remove a pressed keyboard: %s", exc)
