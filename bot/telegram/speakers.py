"""Who is talking, and where, in the platform-neutral terms of bot.commands."""

from __future__ import annotations

import logging

from telegram import Bot, Chat, Update, User
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError

from bot.commands import Speaker
from bot.settings import TelegramSettings
from bot.telegram.limits import GROUP_TYPES
from brain.api_models import ChatKind

log = logging.getLogger(__name__)

PLATFORM = "telegram"


def sender_and_chat(update: Update) -> tuple[User, Chat]:
    """Who sent the update, and where: every message or button press the bot handles has both."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        raise ValueError("this update has no sender or no chat")
    return user, chat


def speaker_for(update: Update, settings: TelegramSettings, *, is_chat_admin: bool = True) -> Speaker:
    """The sender of a message or the presser of a button, in the chat it happened in."""
    user, chat = sender_and_chat(update)
    return Speaker(
        platform=PLATFORM,
        user_id=str(user.id),
        chat_id=str(chat.id),
        chat_kind=ChatKind.group if chat.type in GROUP_TYPES else ChatKind.direct,
        display_name=user.full_name[:128],
        is_chat_admin=is_chat_admin,
        is_operator=user.id in settings.operators,
    )


async def commander(update: Update, bot: Bot, settings: TelegramSettings, name: str, args: str) -> Speaker:
    """The speaker of a command; whether they administer the chat is asked only where it matters."""
    who = speaker_for(update, settings)
    if who.chat_kind is ChatKind.group and name == "persona" and args:
        user, chat = sender_and_chat(update)
        admin = await is_chat_admin(bot, chat.id, user.id)
        who = speaker_for(update, settings, is_chat_admin=admin)
    return who


async def is_chat_admin(bot: Bot, chat_id: int, user_id: int) -> bool:
    """Asked of Telegram each time, so a demoted admin loses the right at once."""
    try:
        member = await bot.get_chat_member(chat_id, user_id)
    except TelegramError as exc:
        log.warning("could not check whether user %s administers chat %s: %s", user_id, chat_id, exc)
        return False
    return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
