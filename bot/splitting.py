"""Cutting a long reply into messages a platform accepts, at the most natural boundary available.

One rule for every adapter; each passes its own platform's limit (bot.telegram.limits, bot.discord.limits).
Length is counted in UTF-16 code units, as Telegram counts it: never more than a count of characters,
so a piece that fits Telegram's count fits Discord's too.
"""

from __future__ import annotations

import re

# Boundaries from best to worst; the group `cut` is the whitespace a cut replaces.
_BOUNDARIES = (
    re.compile(r"(?P<cut>\n\s*\n)"),  # a paragraph
    re.compile(r"(?P<cut>\n)"),  # a line
    re.compile(r"[.!?…。！？][\"'”’)\]]*(?P<cut>\s+)"),  # a sentence, closing quotes kept with it
    re.compile(r"[;,](?P<cut>\s+)"),  # a clause
    re.compile(r"(?P<cut>\s+)"),  # a word
)
# how far past the limit a boundary's whitespace may reach (only the text before it is kept)
_LOOKAHEAD = 64


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (an emoji can count twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int) -> list[str]:
    """Split `text` into stripped, non-empty pieces of at most `limit` UTF-16 units each.

    Only whitespace at the cuts is dropped, so joining the pieces with spaces keeps every word.
    The cut for a piece depends only on the text up to `limit`, so a growing, streamed text keeps
    the pieces it has already filled.
    """
    text = text.strip()
    pieces: list[str] = []
    while utf16_len(text) > limit:
        start, end = _best_cut(text, _fitting_size(text, limit))
        pieces.append(text[:start].rstrip())
        text = text[end:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def _fitting_size(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 units (at least one)."""
    size = min(len(text), limit)
    while size > 1 and utf16_len(text[:size]) > limit:
        size -= 1
    return size


def _best_cut(text: str, size: int) -> tuple[int, int]:
    """(start, end) of the whitespace to cut at: the piece is text[:start], at most `size` long."""
    # prefer a boundary in the second half of the window, so pieces are not needlessly short
    for earliest in (size // 2, 1):
        for boundary in _BOUNDARIES:
            cuts = [m for m in boundary.finditer(text, 0, size + _LOOKAHEAD) if earliest <= m.start("cut") <= size]
            if cuts:
                return cuts[-1].start("cut"), cuts[-1].end("cut")
    return size, size
