"""Telegram's own rules for a bot, in one place (bot/README.md explains them)."""

from __future__ import annotations

import re

from telegram import Chat

# a message's text, counted in UTF-16 code units
MESSAGE_LIMIT = 4096
# a button's callback_data, in bytes
CALLBACK_DATA_LIMIT = 64
# the notice shown when a button is pressed, in characters
CALLBACK_ANSWER_LIMIT = 200
# Telegram clears a "typing…" status after about 5 s; it is sent again a little sooner
TYPING_REFRESH_S = 4.0
# what Telegram accepts as a webhook's secret token
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# chats where several people talk; every other kind is a direct chat
GROUP_TYPES = (Chat.GROUP, Chat.SUPERGROUP)

# Flood limits. Telegram answers a bot that goes faster with 429 and `retry_after`, a wait that holds that one
# chat: about one message (a send or an edit) a second in a chat, at most twenty a minute in a group, and
# about thirty a second over all chats together (which a bot of this size does not reach).
CHAT_INTERVAL_S = 1.0
GROUP_MESSAGES_PER_MINUTE = 20


def is_group_chat(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; a private chat's id is its user's."""
    return chat_id < 0


# how Telegram says a text uses markup it cannot parse, or an edit that would change nothing
PARSE_ERROR = "can't parse entities"
NOT_MODIFIED = "message is not modified"
# how it says an edit can never succeed: the message was deleted, or it may no longer be edited
MESSAGE_GONE = "message to edit not found"
CANNOT_EDIT = "message can't be edited"
