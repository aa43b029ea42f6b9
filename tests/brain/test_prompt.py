"""Prompt assembly: within the context budget, newest turns kept, summary and persona in front."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from brain.api_models import Turn
from brain.prompt import build_prompt, count_tokens


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def history(tokenizer, n: int) -> list[Turn]:
    turns = []
    for i in range(n):
        for role, text in (
            ("user", f"question number {i} about the weather"),
            ("assistant", f"answer number {i}"),
        ):
            turns.append(Turn(role=role, text=text, ts=0, tokens=count_tokens(tokenizer, text)))
    return turns


def test_prompt_fits_the_budget_and_keeps_the_newest_turns(tokenizer):
    turns = history(tokenizer, 30)
    prompt = build_prompt(tokenizer, system_prompt="Be kind.", summary="", turns=turns, text="latest?", budget=200)
    assert len(prompt.ids) <= 200
    assert 0 < prompt.turns_used < len(turns)
    kept = prompt.messages[1:-1]
    assert kept[-1]["content"] == "answer number 29"
    assert kept[0]["role"] == "user"
    assert prompt.messages[-1] == {"role": "user", "content": "latest?"}


def test_everything_fits_when_there_is_room(tokenizer):
    turns = history(tokenizer, 3)
    prompt = build_prompt(tokenizer, system_prompt="Be kind.", summary="", turns=turns, text="hi", budget=2000)
    assert prompt.turns_used == 6


def test_summary_and_persona_come_first(tokenizer):
    prompt = build_prompt(
        tokenizer,
        system_prompt="You are a pirate.",
        summary="Ann likes tea.",
        turns=[],
        text="hi",
        budget=500,
    )
    system = prompt.messages[0]
    assert system["role"] == "system"
    assert "You are a pirate." in system["content"] and "Ann likes tea." in system["content"]


def test_a_message_too_long_for_the_model_is_refused(tokenizer):
    with pytest.raises(ValueError, match="tokens"):
        build_prompt(tokenizer, system_prompt="x", summary="", turns=[], text="word " * 500, budget=64)
