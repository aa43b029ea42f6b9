from __future__ import annotations

from bot.telegram.splitting import split_message, utf16_len


def test_a_short_reply_is_one_message():
    assert split_message("  Hello there.  ") == ["Hello there."]
    assert split_message("   ") == []


def test_paragraphs_are_preferred_over_sentences():
    first, second = "A" * 50 + ". " + "B" * 30 + ".", "C" * 40 + "."
    assert split_message(f"{first}\n\n{second}", limit=100) == [first, second]


def test_sentences_are_kept_whole_with_their_closing_quotes():
    text = 'He said "stop." Then he left. And the rest follows.'
    assert split_message(text, limit=22) == ['He said "stop."', "Then he left.", "And the rest follows."]


def test_a_text_without_spaces_is_cut_hard_and_nothing_is_lost():
    text = "x" * 10_000
    pieces = split_message(text)
    assert [len(p) for p in pieces] == [4096, 4096, 1808]
    assert "".join(pieces) == text


def test_length_is_counted_as_telegram_counts_it():
    text = "😀 " * 3000  # each emoji is two UTF-16 units
    pieces = split_message(text)
    assert all(utf16_len(p) <= 4096 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_a_growing_text_keeps_its_finished_pieces():
    sentence = "This sentence is part of a long streamed reply. "
    text = sentence * 200
    early = split_message(text[:5000])
    late = split_message(text)
    assert late[0] == early[0]
