"""A member's facts and recalled messages head their message in a note, within their bounds, and never change
the conversation before it."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from brain.api_models import Turn
from brain.memory.context import Memory
from brain.prompt import build_prompt, count_tokens

HISTORY = [
    Turn(role="user", text="How do rainbows form?", ts=0, tokens=6),
    Turn(role="assistant", text="Light bends in raindrops.", ts=0, tokens=6),
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def prompt(tokenizer, memory: Memory, text: str = "What is my dog called?", budget: int = 2000):
    return build_prompt(
        tokenizer, system_prompt="Be kind.", summary="", turns=HISTORY, text=text, budget=budget, memory=memory
    )


def test_facts_and_the_matching_earlier_message_head_the_new_message(tokenizer):
    memory = Memory(
        facts=["My name is Alice", "I live in Lisbon."],
        earlier=["My dog is called Biscuit.", "Can you explain volcanoes?"],
        recall_tokens=100,
    )
    message = prompt(tokenizer, memory).messages[-1]
    assert message["role"] == "user" and message["content"].endswith("\n\nWhat is my dog called?")
    assert "My name is Alice. I live in Lisbon." in message["content"]
    assert '"My dog is called Biscuit."' in message["content"]
    assert "volcanoes" not in message["content"]  # it does not match the question


def test_the_conversation_before_the_message_is_the_same_with_or_without_memory(tokenizer):
    bare = prompt(tokenizer, Memory())
    remembered = prompt(tokenizer, Memory(facts=["My name is Alice."], earlier=["my dog Biscuit"], recall_tokens=50))
    assert bare.messages[:-1] == remembered.messages[:-1]
    assert bare.messages[-1] == {"role": "user", "content": "What is my dog called?"}


def test_recalled_messages_stay_within_their_token_bound(tokenizer):
    long_ones = [f"my dog story number {i} " + "and then the dog ran far " * 5 for i in range(10)]
    bound = count_tokens(tokenizer, long_ones[0]) + 10  # room for one of them
    note = prompt(tokenizer, Memory(earlier=long_ones, recall_tokens=bound)).messages[-1]["content"]
    assert sum(f"my dog story number {i} " in note for i in range(10)) == 1
    assert "dog story" not in prompt(tokenizer, Memory(earlier=long_ones, recall_tokens=0)).messages[-1]["content"]


def test_memory_gives_way_before_a_message_is_refused(tokenizer):
    memory = Memory(facts=["I collect stamps " * 20], earlier=["what about stamps " * 20], recall_tokens=500)
    text = "stamps " * 60
    bare = build_prompt(tokenizer, system_prompt="Be kind.", summary="", turns=[], text=text, budget=10_000)
    tight = build_prompt(
        tokenizer, system_prompt="Be kind.", summary="", turns=[], text=text, budget=len(bare.ids) + 5, memory=memory
    )
    assert tight.messages[-1]["content"] == text
