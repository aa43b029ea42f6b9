"""Cutting a long reply into Discord messages."""

from __future__ import annotations

from bot.discord.text import split_message


def test_a_reply_without_breaks_is_cut_hard_and_nothing_is_lost():
    link = "https://example.org/" + "a" * 4500

    text = f"See {link} for more."

    pieces = split_message(text)

    assert [len(p) for p in pieces] == [2000, 2000, len(text) - 4000]
    assert "".join(pieces) == text


def test_a_cut_prefers_a_sentence_end_to_a_word_break():
    text = "A" * 1500 + ". " + "b " * 400

    first, rest = split_message(text)

    assert first == "A" * 1500 + ". "
    assert first + rest == text
