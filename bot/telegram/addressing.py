"""When a message is meant for the bot: always in direct chats; in groups when it is mentioned,
replied to, or commanded, or always where the operator chose group_replies = "all"."""

from __future__ import annotations

import re

from telegram import Message, MessageEntity
from telegram.ext import filters

from bot.telegram.limits import GROUP_TYPES
from brain.api_models import ContextMessage


def in_group(message: Message) -> bool:
    return message.chat.type in GROUP_TYPES


def mentions_me(message: Message) -> bool:
    me = message.get_bot()
    for entity, text in message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION]).items():
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == me.id:
            return True
        if entity.type == MessageEntity.MENTION and text[1:].lower() == (me.username or "").lower():
            return True
    return False


def replies_to_me(message: Message) -> bool:
    replied = message.reply_to_message
    return bool(replied and replied.from_user and replied.from_user.id == message.get_bot().id)


class AddressedToMe(filters.MessageFilter):
    """Lets through the text messages the bot should answer."""

    def __init__(self, group_replies: str):
        super().__init__(name=f"AddressedToMe({group_replies})")
        self.group_replies = group_replies

    def filter(self, message: Message) -> bool:
        if not in_group(message) or self.group_replies == "all":
            return True
        return mentions_me(message) or replies_to_me(message)


class CommandForMe(filters.MessageFilter):
    """A command in a direct chat, or one that names this bot (/cmd@me) in a group."""

    def filter(self, message: Message) -> bool:
        if not in_group(message):
            return True
        head = (message.text or "").split(maxsplit=1)[0] if message.text else ""
        _, _, target = head.partition("@")
        return target.lower() == (message.get_bot().username or "").lower()


def text_for_brain(message: Message) -> str:
    """The message without the @mention that addressed the bot."""
    username = message.get_bot().username or ""
    text = message.text or ""
    if username:
        text = re.sub(rf"(?i)@{re.escape(username)}\b", "", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def reply_context(message: Message) -> list[ContextMessage]:
    """The message being replied to, which the user is most likely talking about."""
    replied = message.reply_to_message
    if replied is None or not (replied.text or replied.caption):
        return []
    author = replied.from_user
    return [
        ContextMessage(
            author=(author.full_name if author else replied.chat.title or "someone")[:128],
            text=(replied.text or replied.caption or "")[:8000],
            from_bot=bool(author and author.id == message.get_bot().id),
        )
    ]
