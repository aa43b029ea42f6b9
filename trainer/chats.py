"""Chat data: conversations in JSONL, and their token ids with only the assistant's words as targets."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.errors import DataError
from trainer.pretrain.data import read_text

Message = dict[str, str]
IGNORE = -100  # the label cross-entropy skips


def is_chat_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".jsonl"


def read_chats(path: str | Path) -> list[list[Message]]:
    """Conversations from JSONL: one {"messages": [{"role": ..., "content": ...}, ...]} per line."""
    text = read_text(path)
    chats = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {number}: not valid JSON ({e.msg})") from None
        messages = record.get("messages") if isinstance(record, dict) else None
        ok = isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )
        if not ok or not messages:
            raise DataError(f'{path}, line {number}: expected {{"messages": [{{"role": ..., "content": ...}}, ...]}}')
        chats.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if not chats:
        raise DataError(f"{path} holds no conversations")
    return chats


def render(tokenizer, messages: list[Message], prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)


def chat_example(tokenizer, messages: list[Message], max_length: int) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) of one conversation, labels set on the assistant's replies and their
    end-of-turn token only: the model learns to answer, not to imitate its users.
    None when truncation to max_length leaves no reply to learn from."""

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    full = ids(render(tokenizer, messages))
    labels = [IGNORE] * len(full)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(ids(render(tokenizer, messages[:i], prompt=True)))
        end = len(ids(render(tokenizer, messages[: i + 1])))
        if tokenizer.eos_token_id in full[start:end]:  # up to the end-of-turn token, not the newline after it
            end = start + max(j for j, t in enumerate(full[start:end]) if t == tokenizer.eos_token_id) + 1
        labels[start:end] = full[start:end]
    full, labels = full[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels[1:]):
        return None
    return full, labels
