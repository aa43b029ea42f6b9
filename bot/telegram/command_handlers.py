"""Commands typed by users: translated to bot.commands and its reply shown, with buttons."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.commands import parse_command, run_command
from bot.telegram.context import deps
from bot.telegram.keyboards import keyboard
from bot.telegram.outbox import Outbox
from bot.telegram.speakers import is_chat_admin, speaker_for
from brain.api_models import ChatKind


async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Run a command and show its reply; an operator command from anyone else gets no answer."""
    parsed = parse_command(update.effective_message.text or "")
    if parsed is not None:
        await run_and_show(update, context, *parsed)


async def run_and_show(update: Update, context: ContextTypes.DEFAULT_TYPE, name: str, args: str) -> None:
    """Run `/name args` as the update's user in the update's chat, and show the reply there."""
    d = deps(context)
    who = speaker_for(update, d.settings)
    if who.chat_kind is ChatKind.group and name == "persona" and args:
        admin = await is_chat_admin(context.bot, update.effective_chat.id, update.effective_user.id)
        who = speaker_for(update, d.settings, is_chat_admin=admin)
    reply = await run_command(d.client, who, name, args)
    if reply is None:
        return
    message = update.effective_message
    reply_to = message.message_id if who.chat_kind is ChatKind.group and message else None
    outbox = Outbox(context.bot, d.pacer, update.effective_chat.id, reply_to=reply_to)
    await outbox.send_long(reply.text, keyboard(reply.buttons, update.effective_user.id))
