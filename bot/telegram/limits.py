"""Telegram's own rules for a bot, in one place."""

from __future__ import annotations

import re

from telegram import Chat

# a message's text, counted in UTF-16 code units
MESSAGE_LIMIT = 4096
# a button's callback_data, in bytes
CALLBACK_DATA_LIMIT = 64
# Telegram clears a "typing…" status after about 5 s; it is sent again a little sooner
TYPING_REFRESH_S = 4.0
# what Telegram accepts as a webhook's secret token
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# chats where several people talk; every other kind is a direct chat
GROUP_TYPES = (Chat.GROUP, Chat.SUPERGROUP)
# how Telegram says a text uses markup it cannot parse, or an edit that would change nothing
PARSE_ERROR = "can't parse entities"
NOT_MODIFIED = "message is not modified"
MESSAGE_GONE = "message to edit not found"
