"""Cutting a long reply into messages: one rule on every platform, each with its own limit."""

from __future__ import annotations

import pytest

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
