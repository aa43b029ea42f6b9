"""Facts picked out of a message keep only what the message itself says."""

from __future__ import annotations

from brain.memory.extract import extraction_messages, grounded_facts, worth_mining

MESSAGE = "Hi! My name is Alice. I live in Lisbon and my dog is called Biscuit."


def test_lines_in_the_messages_own_words_are_kept():
    answer = "- My name is Alice.\n- I live in Lisbon.\n- My dog is called Biscuit."
    assert grounded_facts(answer, MESSAGE) == ["My name is Alice.", "I live in Lisbon.", "My dog is called Biscuit."]


def test_invented_or_copied_facts_are_dropped():
    # the example's 'Tom', a guess at a job, a sentence that is not about the member, and 'none'
    answer = "- My name is Tom.\n- I work as a lawyer in Lisbon.\n- Lisbon is in Portugal.\n- none\n- My name is Alice."
    assert grounded_facts(answer, MESSAGE) == ["My name is Alice."]


def test_at_most_three_facts_a_message_and_no_repeats():
    answer = "\n".join(["- My name is Alice."] * 2 + ["- I live in Lisbon.", "- My dog is Biscuit.", "- I am Alice."])
    assert grounded_facts(answer, MESSAGE) == ["My name is Alice.", "I live in Lisbon.", "My dog is Biscuit."]


def test_only_messages_about_their_author_are_given_to_the_model():
    assert worth_mining(MESSAGE)
    assert not worth_mining("Can you explain how rainbows form?")
    assert not worth_mining("My story: " + "word " * 200)
    assert extraction_messages(MESSAGE)[-1] == {"role": "user", "content": MESSAGE}
