"""Message text on Discord: its 2,000-character limit and the bot's own mention."""

from __future__ import annotations

import re

MESSAGE_LIMIT = 2000
# the best places to cut a long reply, best first
_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", "; ", ", ", " ")


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut text into pieces of at most `limit` characters, at a paragraph, line, sentence or word break.

    Nothing is dropped: the pieces joined give the text back. A piece depends only on the text before
    its end, so a reply that grows while it streams never re-cuts a piece already shown.
    """
    pieces = []
    while len(text) > limit:
        cut = _cut(text, limit)
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def _cut(text: str, limit: int) -> int:
    window = text[:limit]
    for mark in _BREAKS:
        at = window.rfind(mark)
        # a break in the first half would leave a stub of a message; a hard cut reads better
        if at >= limit // 2:
            return at + len(mark)
    return limit


def without_mention(content: str, user_id: int) -> str:
    """The text of a message addressed to the bot, its mention of the bot taken out."""
    return re.sub(rf"<@!?{user_id}>", " ", content).strip()
