"""Recall ranks a member's earlier messages by what a new one asks about."""

from __future__ import annotations

from brain.api_models import EarlierTurn, Fact
from brain.memory.context import Memory
from brain.memory.facts import new_fact
from brain.memory.recall import rank

EARLIER = [
    "Hi! My name is Alice. I live in Lisbon and my dog is called Biscuit.",
    "Can you explain how rainbows form?",
    "How do I teach a dog to sit?",
    "What should I cook for dinner tonight?",
    "I'm living with two flatmates at the moment.",
]


def best(question: str) -> str | None:
    ranked = rank(question, EARLIER)
    return EARLIER[ranked[0][0]] if ranked else None


def test_the_message_that_named_the_dog_comes_back_for_a_question_about_it():
    assert best("What is my dog called?") == EARLIER[0]


def test_the_words_of_a_question_match_other_forms_of_them():
    # 'live' finds 'living', and 'name' finds 'named'
    ranked = [EARLIER[i] for i, _ in rank("Where do I live?", EARLIER)]
    assert set(ranked[:2]) == {EARLIER[0], EARLIER[4]}
    assert rank("Who named you?", ["The cat I adopted is named Pickle."])


def test_a_message_of_function_words_alone_recalls_nothing():
    assert rank("What is it? Can you tell me?", EARLIER) == []
    assert rank("anything about volcanoes", EARLIER) == []


def said(role: str, text: str, chat_id: str, chat_kind: str) -> EarlierTurn:
    return EarlierTurn.model_validate({"role": role, "text": text, "ts": 0, "chat_id": chat_id, "chat_kind": chat_kind})


def test_a_prompt_quotes_only_what_the_chat_may_use():
    earlier = [
        said("user", "My dog is called Biscuit.", "dm", "direct"),
        said("assistant", "What a lovely dog name!", "dm", "direct"),
        said("user", "Our team's dog is called Rex.", "g1", "group"),
        said("user", "The club dog is called Fido.", "g2", "group"),
    ]
    facts: list[Fact] = [
        new_fact("I have a dog.", "pinned", "dm", "direct"),
        new_fact("I run the g1 team.", "pinned", "g1", "group"),
    ]

    def memory(chat_id: str, group: bool, share: bool = False) -> Memory:
        return Memory.for_chat(facts, earlier, chat_id=chat_id, group=group, share_direct=share, recall_tokens=99)

    in_private = memory("dm", group=False)
    assert in_private.facts == ["I have a dog.", "I run the g1 team."]
    assert set(in_private.recalled("what is my dog called")) == {
        "My dog is called Biscuit.", "Our team's dog is called Rex.", "The club dog is called Fido.",
    }  # fmt: skip
    in_group = memory("g1", group=True)
    assert in_group.facts == ["I run the g1 team."]
    assert in_group.recalled("what is my dog called") == ["Our team's dog is called Rex."]
    shared = memory("g1", group=True, share=True)
    assert shared.facts == ["I have a dog.", "I run the g1 team."]
    assert set(shared.recalled("dog called")) == {"My dog is called Biscuit.", "Our team's dog is called Rex."}


def test_a_message_the_facts_already_cover_is_not_quoted_again():
    memory = Memory(
        facts=["My name is Alice.", "My dog is called Biscuit."],
        earlier=["Hi! My name is Alice and my dog is called Biscuit.", "My dog Biscuit hates the vet in Lisbon."],
        recall_tokens=100,
    )
    assert memory.recalled("what is my dog called") == ["My dog Biscuit hates the vet in Lisbon."]


def test_what_a_member_asked_is_not_quoted_back_as_what_they_said():
    earlier = [
        said("user", "What is the best city to visit in Italy?", "dm", "direct"),
        said("user", "I live in Lisbon now.   Which  museums in the city should I see?", "dm", "direct"),
    ]
    memory = Memory.for_chat([], earlier, chat_id="dm", group=False, share_direct=False, recall_tokens=99)
    assert memory.recalled("Which city do I live in?") == ["I live in Lisbon now."]
