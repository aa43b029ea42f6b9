"""Recall quotes what a member told, not what they asked: questions are known by their form, "?" or not, and
what a member tells inside a question is kept."""

from __future__ import annotations

import pytest

from brain.memory.context import is_question, statements

# (message, what recall may quote of it)
TABLE = [
    # questions with "?"
    ("Which city should I visit?", ""),
    ("What is the capital of France?", ""),
    ("How do I teach a dog to sit?", ""),
    ("Can you explain how rainbows form?", ""),
    # questions without "?"
    ("Where should I travel in Spain", ""),
    ("Which of these books should I read first", ""),
    ("Who of you is coming tonight", ""),
    ("What's the best beach near Lisbon", ""),
    ("Which museums are worth it", ""),
    ("How long should I stay in Rome", ""),
    ("Why is the sky blue", ""),
    ("Did you see the match yesterday", ""),
    ("Can you recommend a good book", ""),
    ("Is it far from the station", ""),
    ("Are there trains to Porto", ""),
    ("Could you plan my week", ""),
    ("Should I bring a jacket", ""),
    ("Do you like jazz", ""),
    ("Will the shops be open on Sunday", ""),
    # statements, some starting as a question might
    ("I live in Porto.", "I live in Porto."),
    ("When I was young I lived in Rome.", "When I was young I lived in Rome."),
    ("How I wish I could travel more.", "How I wish I could travel more."),
    ("What a lovely day!", "What a lovely day!"),
    ("Have a nice day.", "Have a nice day."),
    ("Do come and visit us.", "Do come and visit us."),
    ("My dog is called Biscuit", "My dog is called Biscuit"),
    ("Where I work, everyone cycles.", "Where I work, everyone cycles."),
    # first-person statements inside questions are kept
    ("Did I mention I live in Porto? It rains a lot.", "I live in Porto. It rains a lot."),
    ("Did I tell you that my dog is called Biscuit?", "My dog is called Biscuit."),
    ("Have I told you I'm a nurse", "I'm a nurse."),
    ("Did you know my sister lives in Paris?", "My sister lives in Paris."),
    ("Can you believe I ran a marathon?", "I ran a marathon."),
    ("I live in Porto, did I mention?", "I live in Porto."),
    ("My name is Ana, remember?", "My name is Ana."),
    # mixed messages keep their statements in order
    ("I'm vegetarian. What should I eat in Lisbon?", "I'm vegetarian."),
    ("Hi! My name is Alice. Where should I go tonight", "Hi! My name is Alice."),
    ("I love hiking\nWhich trails do you recommend", "I love hiking"),
    ("Do you know what time it is?", ""),
]


def test_the_table_holds_at_least_thirty_sentences() -> None:
    assert len(TABLE) >= 30


@pytest.mark.parametrize(("message", "kept"), TABLE)
def test_recall_keeps_what_was_told_and_leaves_out_what_was_asked(message: str, kept: str) -> None:
    assert statements(message) == kept


@pytest.mark.parametrize(
    ("sentence", "asks"),
    [("Where should I travel in Spain", True), ("When I was young I lived in Rome.", False), ("Is it far", True)],
)
def test_a_question_is_known_by_its_form(sentence: str, asks: bool) -> None:
    assert is_question(sentence) is asks
