"""Cutting a long reply into messages a platform accepts, at the most natural boundary available.

One rule for every adapter; each passes its own platform's limit (bot.telegram.limits, bot.discord.limits).
Length is counted in UTF-16 code units, as Telegram counts it: never more than a count of characters,
so a piece that fits Telegram's count fits Discord's too.

A cut never falls inside a grapheme cluster (what a reader sees as one character: a letter with its
combining accents, an emoji with its skin tone, a flag, a ZWJ family), as Unicode text segmentation
(UAX #29, the `regex` module's ``\\X``) defines it.
"""

from __future__ import annotations

import regex

_GRAPHEME = regex.compile(r"\X")
# Boundaries from best to worst; the group `cut` is the whitespace a cut replaces.
_BOUNDARIES = (
    regex.compile(r"(?P<cut>\n\s*\n)"),  # a paragraph
    regex.compile(r"(?P<cut>\n)"),  # a line
    regex.compile(r"[.!?…。！？][\"'”’)\]]*(?P<cut>\s+)"),  # a sentence, closing quotes kept with it
    regex.compile(r"[;,](?P<cut>\s+)"),  # a clause
    regex.compile(r"(?P<cut>\s+)"),  # a word
)
# how far past the limit a boundary's whitespace may reach (only the text before it is kept)
_LOOKAHEAD = 64
# a last piece this short (in UTF-16 units) is avoided: a message of a word or two reads as a glitch
_TINY = 12


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (an emoji can count twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int) -> list[str]:
    """Split `text` into stripped, non-empty pieces of at most `limit` UTF-16 units each.

    Only whitespace at the cuts is dropped, so joining the pieces with spaces keeps every word, and
    every grapheme cluster stays whole; a last piece of a few characters is avoided by an earlier cut. The
    cut for a piece depends only on the text up to a little past `limit`, so a growing, streamed text keeps
    the pieces it has already filled.
    """
    text = text.strip()
    pieces: list[str] = []
    while utf16_len(text) > limit:
        start, end = _best_cut(text, limit)
        if 0 < utf16_len(text[end:].strip()) <= _TINY and limit > 8 * _TINY:
            # a last piece of a few characters would be a message of its own: cut earlier, at a boundary still
            earlier, earlier_end = _best_cut(text, limit - 4 * _TINY)
            if earlier < earlier_end or start == end:
                start, end = earlier, earlier_end
        pieces.append(text[:start].rstrip())
        text = text[end:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def _clusters(text: str, limit: int) -> tuple[int, set[int]]:
    """How many characters of whole grapheme clusters fit in `limit` UTF-16 units, and the offsets between
    clusters from the start to a little past that (where a boundary's whitespace may end)."""
    size, units = 0, 0
    between = {0}
    for cluster in _GRAPHEME.finditer(text):
        units += utf16_len(cluster.group())
        if units <= limit:
            size = cluster.end()
        elif cluster.start() > size + _LOOKAHEAD:
            break
        between.add(cluster.end())
    return size, between


def _best_cut(text: str, limit: int) -> tuple[int, int]:
    """(start, end) of the whitespace to cut at: the piece is text[:start], at most `limit` UTF-16 units."""
    size, between = _clusters(text, limit)
    if not size:
        # one cluster longer than the limit (thousands of stacked accents): the only cut through a cluster
        return _hard_cut(text, limit)
    # prefer a boundary in the second half of the window, so pieces are not needlessly short
    for earliest in (size // 2, 1):
        for boundary in _BOUNDARIES:
            cuts = [
                m
                for m in boundary.finditer(text, 0, size + _LOOKAHEAD)
                if earliest <= m.start("cut") <= size and {m.start("cut"), m.end("cut")} <= between
            ]
            if cuts:
                return cuts[-1].start("cut"), cuts[-1].end("cut")
    return size, size


def _hard_cut(text: str, limit: int) -> tuple[int, int]:
    size = min(len(text), limit)
    while size > 1 and utf16_len(text[:size]) > limit:
        size -= 1
    return size, size
