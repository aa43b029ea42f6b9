"""A summary is kept only if its content words were said in the turns it folds."""

from __future__ import annotations

from brain.memory.summary import faithful, unsaid_words

TURNS = [
    "I want to visit Lisbon next month. Any tips?",
    "Lisbon is lovely: see Belem and the Alfama, and take tram 28.",
]


def test_an_invented_summary_is_caught_with_the_words_nobody_said() -> None:
    invented = "User: I'd love to go to Lisbon and Sintra! Can you suggest some must-visit places"
    assert "sintra" in unsaid_words(invented, TURNS)
    assert not faithful(invented, TURNS)


def test_a_summary_in_its_own_words_of_what_was_said_is_kept() -> None:
    assert faithful("The user wants to visit Lisbon next month; the assistant suggested Belem, Alfama, tram 28.", TURNS)
    assert faithful("User visits Lisbon.", TURNS)
    assert faithful("", TURNS)


def test_the_previous_summary_counts_as_said() -> None:
    assert faithful("The user has a dog called Biscuit and visits Lisbon.", [*TURNS, "User has a dog called Biscuit."])
