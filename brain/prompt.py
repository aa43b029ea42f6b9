"""Prompt assembly with the model's own chat template, within a token budget.

Order: the persona's system prompt (with the rolling summary of older talk), the platform's thread
context, then as many recent turns as fit (newest kept, whole user/assistant pairs), then the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brain.api_models import ContextMessage


@dataclass
class Prompt:
    ids: list[int]
    turns_used: int
    messages: list[dict[str, str]]


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def render(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def system_message(system_prompt: str, summary: str) -> str:
    parts = [system_prompt.strip()]
    if summary:
        parts.append(f"Summary of your earlier conversation with them: {summary.strip()}")
    return "\n\n".join(parts)


def build_prompt(
    tokenizer: Any,
    *,
    system_prompt: str,
    summary: str,
    turns: list[dict[str, Any]],
    text: str,
    budget: int,
    context: list[ContextMessage] | None = None,
) -> Prompt:
    """The prompt ids for `text`; raises ValueError when even the message alone does not fit."""
    head = [{"role": "system", "content": system_message(system_prompt, summary)}]
    for message in context or []:
        role = "assistant" if message.from_bot else "user"
        content = message.text if message.from_bot else f"{message.author}: {message.text}"
        head.append({"role": role, "content": content})
    tail = [{"role": "user", "content": text}]

    fixed = render(tokenizer, head + tail)
    if len(fixed) > budget:
        # thread context is a nicety: drop it before refusing
        head = head[:1]
        fixed = render(tokenizer, head + tail)
        if len(fixed) > budget:
            raise ValueError(f"the message needs {len(fixed)} tokens, more than the {budget} the model can take")

    # newest pairs first, estimated from stored token counts, then verified with the real template
    spare = budget - len(fixed)
    kept: list[dict[str, Any]] = []
    for i in range(len(turns) - 1, -1, -1):
        cost = int(turns[i].get("tokens") or count_tokens(tokenizer, turns[i]["text"])) + 8
        if cost > spare:
            break
        spare -= cost
        kept.insert(0, turns[i])
    while kept and kept[0]["role"] != "user":
        kept.pop(0)
    while True:
        messages = head + [{"role": t["role"], "content": t["text"]} for t in kept] + tail
        ids = render(tokenizer, messages)
        if len(ids) <= budget or not kept:
            return Prompt(ids=ids, turns_used=len(kept), messages=messages)
        kept = kept[2:] if len(kept) >= 2 else []
