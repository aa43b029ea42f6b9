"""Cutting a long reply into messages: one rule on every platform, each with its own limit."""

from __future__ import annotations

import pytest
import regex

from bot.discord.limits import MESSAGE_LIMIT as DISCORD_LIMIT
from bot.splitting import split_message, utf16_len
from bot.telegram.limits import MESSAGE_LIMIT as TELEGRAM_LIMIT


def test_a_short_reply_is_one_message():
    assert split_message("  Hello there.  ", TELEGRAM_LIMIT) == ["Hello there."]
    assert split_message("   ", TELEGRAM_LIMIT) == []


def test_paragraphs_are_preferred_over_sentences():
    first, second = "A" * 50 + ". " + "B" * 30 + ".", "C" * 40 + "."
    assert split_message(f"{first}\n\n{second}", 100) == [first, second]


def test_sentences_are_kept_whole_with_their_closing_quotes():
    text = 'He said "stop." Then he left. And the rest follows.'
    assert split_message(text, 22) == ['He said "stop."', "Then he left.", "And the rest follows."]


def test_a_sentence_end_is_preferred_to_a_word_break():
    text = "A" * 1500 + ". " + "b " * 400

    first, rest = split_message(text, DISCORD_LIMIT)

    assert first == "A" * 1500 + "."
    assert rest == ("b " * 400).strip()


@pytest.mark.parametrize(("limit", "sizes"), [(TELEGRAM_LIMIT, [4096, 4096, 1808]), (DISCORD_LIMIT, [2000] * 5)])
def test_a_text_without_spaces_is_cut_hard_and_nothing_is_lost(limit: int, sizes: list[int]):
    text = "x" * 10_000
    pieces = split_message(text, limit)
    assert [len(p) for p in pieces] == sizes
    assert "".join(pieces) == text


def test_length_is_counted_as_telegram_counts_it():
    text = "😀 " * 3000  # each emoji is two UTF-16 units
    pieces = split_message(text, TELEGRAM_LIMIT)
    assert all(utf16_len(p) <= TELEGRAM_LIMIT for p in pieces)
    assert " ".join(pieces).split() == text.split()


@pytest.mark.parametrize("limit", [TELEGRAM_LIMIT, DISCORD_LIMIT])
def test_a_growing_text_keeps_its_finished_pieces(limit: int):
    sentence = "This sentence is part of a long streamed reply. "
    text = sentence * 200
    early = split_message(text[: limit + limit // 4], limit)
    late = split_message(text, limit)
    assert late[0] == early[0]
    assert all(len(piece) <= limit and piece.endswith(".") for piece in late)


# what a reader sees as one character, though it is several code points (and more UTF-16 units)
CLUSTERS = {
    "combining accents": "e\u0301\u0323",
    "ZWJ family": "👩\u200d👩\u200d👧\u200d👦",
    "ZWJ rainbow flag": "🏳\ufe0f\u200d🌈",
    "flag": "🇫🇷",
    "skin tone": "👍🏽",
}


def clusters(text: str) -> list[str]:
    """The grapheme clusters of `text` that are not whitespace."""
    return [c for c in regex.findall(r"\X", text) if not c.isspace()]


@pytest.mark.parametrize("name", CLUSTERS)
@pytest.mark.parametrize("filler", ["x", "ab "], ids=["hard cut", "word cut"])
def test_no_cut_falls_inside_a_character_people_see_as_one(name: str, filler: str):
    cluster, limit = CLUSTERS[name], 40
    for before in range(limit - 14, limit + 2):
        # the cluster twice in a row, at every position around the limit
        text = (filler * limit)[:before] + cluster * 2 + "y" * 30

        pieces = split_message(text, limit)

        assert all(utf16_len(piece) <= limit for piece in pieces), (before, pieces)
        # the pieces' clusters are the text's: had a cut gone through one, both halves would show as other clusters
        assert [c for piece in pieces for c in clusters(piece)] == clusters(text), (before, pieces)


def test_a_long_run_of_emoji_is_cut_between_them_and_nothing_is_lost():
    text = "🇫🇷" * 50 + "👍🏽" * 50 + "👩\u200d👩\u200d👧\u200d👦" * 20

    pieces = split_message(text, 64)

    assert "".join(pieces) == text
    assert [c for piece in pieces for c in clusters(piece)] == clusters(text)


def test_a_cut_that_would_leave_a_few_characters_on_their_own_falls_earlier():
    text = "A sentence that fills the message. " * 50 + "Bye now."
    limit = len(text) - 6  # the natural cut leaves "now." alone

    pieces = split_message(text, limit)

    assert len(pieces) == 2 and len(pieces[-1]) > 12
    assert " ".join(pieces).split() == text.split()
    assert all(len(piece) <= limit for piece in pieces)
