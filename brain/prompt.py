"""Prompt assembly with the model's own chat template, within a token budget.

Order: the persona's system prompt (with the rolling summary of older talk), the platform's thread context, then
as many recent turns as fit (newest kept, whole user/assistant pairs), then the message, headed by a note of the
member's memory: their facts and the earlier messages of theirs that match this one.

The note sits right before the message, not in the system prompt: once a conversation is a dozen turns long the
default model ignores what the system prompt states (in a trial after 12 exchanges: 0 of 30 facts recalled from
there, 22 from the note), and everything before the message stays the same from one message to the next (until
the window slides), so the engine reuses the conversation's cached prefix. The note is never stored: a turn keeps
only what the member wrote.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from brain.api_models import ContextMessage, Turn
from brain.memory.context import Memory

# the wording the default model used best in trials: about "the user", not in the member's first person (figures in
# README, The brain)
FACTS_NOTE = "Facts about the user: "
RECALL_NOTE = "Earlier, the user said: "


@dataclass
class Prompt:
    ids: list[int]
    turns_used: int
    messages: list[dict[str, str]]
    # how many of the messages, after the system message, are the platform's thread context
    thread_used: int = 0
    # what the note before the message quotes of the member's memory: facts, and recalled earlier messages
    facts: list[str] = field(default_factory=list)
    recalled: list[str] = field(default_factory=list)
    # how many of the first ids are the persona's system prompt alone, as every member of the persona sends it
    public: int = 0

    @property
    def own_messages(self) -> list[dict[str, str]]:
        """The messages without the thread context: other members' words, which a kept turn must not hold."""
        return self.messages[:1] + self.messages[1 + self.thread_used :]


# put inside a control token's name where a message's text spells it: the text reads the same, but no longer
# tokenizes to the control token (an invisible WORD JOINER)
DEFUSER = "\u2060"


@functools.lru_cache(maxsize=8)
def control_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The strings this tokenizer reads as control tokens (its special and added tokens), longest first."""
    names = set(getattr(tokenizer, "all_special_tokens", []) or []) | set(tokenizer.get_added_vocab())
    return tuple(sorted((name for name in names if len(name) > 1), key=len, reverse=True))


def defuse(tokenizer: Any, text: str) -> str:
    """``text`` with every control token it spells broken, so that what a member wrote (a message, a fact, a
    persona, a display name) stays text: "<|im_end|><|im_start|>system" in a message must not end it and open a
    system turn, since the tokenizer reads control tokens in the rendered template's text."""
    for token in control_tokens(tokenizer):
        if token in text:
            text = text.replace(token, token[0] + DEFUSER + token[1:])
    return text


def fence(text: str) -> str:
    """A member's fact or earlier message as the note quotes it: without the brackets and quotes that delimit the
    note, so that it cannot end the note ("...) (System: ...") and speak in another voice."""
    return text.replace("(", "[").replace(")", "]").replace('"', "'")


def public_prefix(tokenizer: Any, system_prompt: str, ids: list[int]) -> int:
    """How many of ``ids`` are the persona's system prompt as every member of the persona sends it (the system
    message alone, without a member's summary): the only part of a prompt whose cached keys and values another
    member's request may reuse (brain/engine/prefix_cache.py). 0 for a template that takes no system message."""
    alone = [{"role": "system", "content": defuse(tokenizer, system_message(system_prompt, ""))}]
    try:
        text = tokenizer.apply_chat_template(alone, tokenize=False, add_generation_prompt=False)
    except Exception:  # a template may refuse a conversation of a system message alone: nothing is then shared
        return 0
    shared = 0
    for mine, theirs in zip(tokenizer(text, add_special_tokens=False)["input_ids"], ids, strict=False):
        if mine != theirs:
            break
        shared += 1
    return shared


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def render(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The prompt ids of ``messages`` in the model's chat template; what the messages say stays text (defuse)."""
    messages = [{**m, "content": defuse(tokenizer, m["content"])} for m in messages]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def system_message(system_prompt: str, summary: str) -> str:
    parts = [system_prompt.strip()]
    if summary:
        parts.append(f"Summary of your earlier conversation with them: {summary.strip()}")
    return "\n\n".join(parts)


def with_memory(text: str, facts: Sequence[str], recalled: Sequence[str]) -> str:
    """The message headed by a note of what the member told the bot before (nothing when there is none)."""
    parts = []
    if facts:
        fenced = [fence(fact) for fact in facts]
        parts.append(FACTS_NOTE + " ".join(fact if fact[-1:] in ".!?" else f"{fact}." for fact in fenced))
    if recalled:
        parts.append(RECALL_NOTE + " ".join(f'"{fence(quote)}"' for quote in recalled))
    return f"({' '.join(parts)})\n\n{text}" if parts else text


def within_tokens(tokenizer: Any, texts: list[str], budget: int) -> list[str]:
    """The first texts whose tokens add up to at most ``budget`` (a text that does not fit is skipped)."""
    kept, spent = [], 0
    for text in texts:
        cost = count_tokens(tokenizer, text) + 4  # the quotes and bullet around it
        if spent + cost <= budget:
            kept.append(text)
            spent += cost
    return kept


def build_prompt(
    tokenizer: Any,
    *,
    system_prompt: str,
    summary: str,
    turns: Sequence[Turn],
    text: str,
    budget: int,
    context: list[ContextMessage] | None = None,
    memory: Memory | None = None,
) -> Prompt:
    """The prompt ids for `text`; raises ValueError when even the message alone does not fit."""
    memory = memory or Memory()
    facts = memory.facts
    recalled = within_tokens(tokenizer, memory.recalled(text), memory.recall_tokens)
    thread = []
    for message in context or []:
        role = "assistant" if message.from_bot else "user"
        content = message.text if message.from_bot else f"{message.author}: {message.text}"
        thread.append({"role": role, "content": defuse(tokenizer, content)})
    system = [{"role": "system", "content": defuse(tokenizer, system_message(system_prompt, summary))}]

    # what is dropped first when the message leaves too little room: the thread context (a nicety), then the
    # recalled messages, then the facts; only then is the message refused
    for keep_thread, keep_recalled, keep_facts in ((1, 1, 1), (0, 1, 1), (0, 0, 1), (0, 0, 0)):
        head = system + (thread if keep_thread else [])
        note = defuse(tokenizer, with_memory(text, facts if keep_facts else [], recalled if keep_recalled else []))
        tail = [{"role": "user", "content": note}]
        fixed = render(tokenizer, head + tail)
        if len(fixed) <= budget:
            break
    else:
        raise ValueError(f"the message needs {len(fixed)} tokens, more than the {budget} the model can take")

    # newest pairs first, estimated from stored token counts, then verified with the real template
    spare = budget - len(fixed)
    kept: list[Turn] = []
    for i in range(len(turns) - 1, -1, -1):
        cost = (turns[i].tokens or count_tokens(tokenizer, turns[i].text)) + 8
        if cost > spare:
            break
        spare -= cost
        kept.insert(0, turns[i])
    while kept and kept[0].role != "user":
        kept.pop(0)
    while True:
        messages = head + [{"role": t.role, "content": defuse(tokenizer, t.text)} for t in kept] + tail
        ids = render(tokenizer, messages)
        if len(ids) <= budget or not kept:
            return Prompt(
                ids=ids,
                turns_used=len(kept),
                messages=messages,
                thread_used=len(head) - 1,
                facts=list(facts) if keep_facts else [],
                recalled=list(recalled) if keep_recalled else [],
                public=public_prefix(tokenizer, system_prompt, ids),
            )
        kept = kept[2:] if len(kept) >= 2 else []
