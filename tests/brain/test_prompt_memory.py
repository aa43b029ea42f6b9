"""A member's facts and recalled messages are stated plainly in the system message, within their bounds."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from brain.memory.context import Memory
from brain.prompt import build_prompt, count_tokens


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def prompt(tokenizer, memory: Memory, text: str = "What is my dog called?", budget: int = 2000):
    return build_prompt(
        tokenizer, system_prompt="Be kind.", summary="", turns=[], text=text, budget=budget, memory=memory
    )


def test_facts_and_the_matching_earlier_message_come_before_the_conversation(tokenizer):
    memory = Memory(
        facts=["My name is Alice."],
        earlier=["My dog is called Biscuit.", "How do rainbows form?"],
        recall_tokens=100,
    )
    system = prompt(tokenizer, memory).messages[0]["content"]
    assert system.startswith("Be kind.")
    assert "My name is Alice." in system and "My dog is called Biscuit." in system
    assert "rainbows" not in system  # it does not match the question


def test_recalled_messages_stay_within_their_token_bound(tokenizer):
    long_ones = [f"my dog story number {i} " + "and then the dog ran far " * 5 for i in range(10)]
    bound = count_tokens(tokenizer, long_ones[0]) + 10  # room for one of them
    system = prompt(tokenizer, Memory(earlier=long_ones, recall_tokens=bound)).messages[0]["content"]
    assert sum(f"my dog story number {i} " in system for i in range(10)) == 1
    assert "dog story" not in prompt(tokenizer, Memory(earlier=long_ones, recall_tokens=0)).messages[0]["content"]


def test_memory_gives_way_before_a_message_is_refused(tokenizer):
    memory = Memory(facts=["I collect stamps " * 20], earlier=["what about stamps " * 20], recall_tokens=500)
    text = "stamps " * 60
    bare = prompt(tokenizer, Memory(), text=text, budget=10_000)
    tight = prompt(tokenizer, memory, text=text, budget=len(bare.ids) + 5)
    assert "I collect stamps" not in tight.messages[0]["content"]
    assert tight.messages[-1]["content"] == text
