""" "Which reply do you prefer?" on Telegram: the second reply under the question, with two inline buttons.

A button's callback_data names the chosen reply's turn and the other's ("cmp:<chosen>:<rejected>", 37 bytes of
the 64 allowed), so a press still works after the bot restarts; the brain checks that the presser asked.
"""

from __future__ import annotations

import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.client import BrainClient
from bot.comparison import NOT_YOURS, PREFER_FIRST, PREFER_SECOND, QUESTION, choose, second_reply
from bot.splitting import split_message
from bot.telegram.context import Context
from bot.telegram.keyboards import remove_keyboard
from bot.telegram.limits import CALLBACK_ANSWER_LIMIT, MESSAGE_LIMIT
from bot.telegram.outbox import Outbox
from bot.telegram.speakers import speaker_for
from brain.api_models import ChatReply, ChatRequest

COMPARE_PREFIX = "cmp:"
COMPARE_PATTERN = rf"^{COMPARE_PREFIX}[0-9a-f]{{16}}:[0-9a-f]{{16}}$"


def comparison_keyboard(first: str, second: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[
            InlineKeyboardButton(PREFER_FIRST, callback_data=f"{COMPARE_PREFIX}{first}:{second}"),
            InlineKeyboardButton(PREFER_SECOND, callback_data=f"{COMPARE_PREFIX}{second}:{first}"),
        ]]
    )  # fmt: skip


async def offer_comparison(client: BrainClient, outbox: Outbox, request: ChatRequest, first: ChatReply | None) -> None:
    """When the brain asked to compare ``first``, show a second reply under the question, with the two buttons."""
    second = await second_reply(client, request, first)
    if second is None or first is None or first.turn_id is None or second.turn_id is None:
        return
    pieces = split_message(f"{QUESTION}\n\n{second.reply}", MESSAGE_LIMIT)
    for piece in pieces[:-1]:
        await outbox.post(piece)
    await outbox.post(pieces[-1], comparison_keyboard(first.turn_id, second.turn_id))


async def on_comparison(update: Update, context: Context) -> None:
    """The member pressed the reply they prefer: the brain keeps the pair, the member is told, the buttons go."""
    query = update.callback_query
    assert query is not None, "routed here for comparison buttons only (see app.build_application)"
    match = re.match(rf"^{COMPARE_PREFIX}(?P<chosen>[0-9a-f]{{16}}):(?P<rejected>[0-9a-f]{{16}})$", query.data or "")
    if match is None:
        await query.answer(NOT_YOURS)
        return
    data = context.bot_data
    who = speaker_for(update, data.settings)
    said, answered = await choose(data.client, who, match["chosen"], match["rejected"])
    await query.answer(said[:CALLBACK_ANSWER_LIMIT])
    if answered:  # a question answered once
        await remove_keyboard(query)
