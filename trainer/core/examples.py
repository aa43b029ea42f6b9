"""Training data as examples: token ids with, beside each, the label the loss takes there.

Conversations go through the model's own chat template. A conversation becomes one or more examples: its
system messages, then as many whole turns as fit in ``max_tokens``. Labels are the replies' tokens (the
assistant's content and its end-of-turn token) or, with ``loss_on="all"``, every token after the system
messages; other positions hold IGNORE_INDEX. Each part is tokenized on its own, the way the brain sees
them: a rendered prompt, then generated tokens. Plain text becomes windows in which every token is a label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trainer.core.text import load_clean_text, read_text
from trainer.errors import DataError

IGNORE_INDEX = -100  # the label cross-entropy skips
Message = dict[str, str]
# the last messages of a conversation that are rendered as context for the next turn: enough to render its
# text exactly, and rendering stays linear in the conversation's length
CONTEXT_MESSAGES = 4


@dataclass
class Example:
    ids: list[int]
    labels: list[int]
    rows = 1  # rows of a batch it fills

    @property
    def size(self) -> int:
        """Its length in tokens: a batch of examples is as wide as its longest one."""
        return len(self.ids)


@dataclass
class PairExample:
    """Two replies to one prompt, the preferred one first (DPO's unit): each a whole sequence whose labels are
    its reply, with the reference model's log-probability of that reply (filled in before training)."""

    chosen: Example
    rejected: Example
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0
    rows = 2

    @property
    def size(self) -> int:
        return max(self.chosen.size, self.rejected.size)


@dataclass
class RatedExample:
    """One reply rated on its own, liked (desirable) or not (KTO's unit). ``mismatched`` is its prompt followed
    by another example's reply: the policy's and the reference's log-ratio on such pairs estimates the KL term
    that KTO takes as its reference point."""

    reply: Example
    desirable: bool
    mismatched: Example
    ref_reply: float = 0.0
    ref_mismatched: float = 0.0
    rows = 2

    @property
    def size(self) -> int:
        return max(self.reply.size, self.mismatched.size)


class ChatRenderer:
    def __init__(self, tokenizer: Any, *, loss_on: Literal["assistant", "all"] = "assistant", max_tokens: int = 384):
        if loss_on not in ("assistant", "all"):
            raise ValueError(f"loss_on must be 'assistant' or 'all', not {loss_on!r}")
        self.tokenizer = tokenizer
        self.loss_on = loss_on
        self.max_tokens = max_tokens

    def text(self, messages: list[Message], prompt: bool = False) -> str:
        if not messages and not prompt:
            return ""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def turn_parts(self, context: list[Message], asked: list[Message], reply: Message) -> tuple[str, str]:
        """The text a turn adds to ``context``: the messages asked and the reply's header, then the reply."""
        before = self.text(context)
        prompt = self.text(context + asked, prompt=True)
        full = self.text(context + asked + [reply])
        if not (prompt.startswith(before) and full.startswith(prompt)):
            raise ValueError("the tokenizer's chat template does not render conversations as growing prefixes")
        return prompt[len(before) :], full[len(prompt) :]

    def completion_parts(self, prompt: list[Message], reply: str) -> tuple[list[int], list[int]] | None:
        """A prompt (chat messages, the last one the member's) and a reply as (prompt ids, reply ids) within
        ``max_tokens``: the oldest messages after the system ones give way first, then the reply's end. None
        when even the last message leaves no room for a reply."""
        system = _leading_system(prompt)
        rest = prompt[len(system) :][-2 * CONTEXT_MESSAGES :]
        answer = {"role": "assistant", "content": reply}
        while True:
            prompt_text = self.text(system + rest, prompt=True)
            full = self.text(system + rest + [answer])
            if not full.startswith(prompt_text):
                raise ValueError("the tokenizer's chat template does not render conversations as growing prefixes")
            prompt_ids, reply_ids = self.ids(prompt_text), self.ids(full[len(prompt_text) :])
            if len(prompt_ids) + min(len(reply_ids), 32) <= self.max_tokens or len(rest) <= 1:
                break
            rest = rest[1:]
        room = self.max_tokens - len(prompt_ids)
        if room < 4 or not reply_ids:
            return None
        return prompt_ids, reply_ids[:room]

    def completion(self, prompt_ids: list[int], reply_ids: list[int]) -> Example:
        """A prompt and a reply as one example whose labels are the reply (up to its end-of-turn token)."""
        reply_ids = reply_ids[: max(0, self.max_tokens - len(prompt_ids))]
        return Example(prompt_ids + reply_ids, [IGNORE_INDEX] * len(prompt_ids) + self._reply_labels(reply_ids))

    def examples(self, messages: list[Message]) -> list[Example]:
        system = _leading_system(messages)
        head = self.ids(self.text(system))
        out: list[Example] = []
        ids, labels = list(head), [IGNORE_INDEX] * len(head)
        history: list[Message] = []
        for asked, reply in _turns(messages[len(system) :]):
            prompt_text, reply_text = self.turn_parts(system + history[-CONTEXT_MESSAGES:], asked, reply)
            history += asked + [reply]
            prompt_ids, reply_ids = self.ids(prompt_text), self.ids(reply_text)
            if len(ids) + len(prompt_ids) + len(reply_ids) > self.max_tokens and len(ids) > len(head):
                out.append(Example(ids, labels))
                ids, labels = list(head), [IGNORE_INDEX] * len(head)
            room = self.max_tokens - len(ids) - len(prompt_ids)
            if room < 4:  # one message longer than the whole window: nothing useful fits
                continue
            reply_ids = reply_ids[:room]
            ids += prompt_ids + reply_ids
            prompt_labels = prompt_ids if self.loss_on == "all" else [IGNORE_INDEX] * len(prompt_ids)
            labels += prompt_labels + self._reply_labels(reply_ids)
        if len(ids) > len(head):
            out.append(Example(ids, labels))
        return [e for e in out if any(label != IGNORE_INDEX for label in e.labels[1:])]

    def _reply_labels(self, reply_ids: list[int]) -> list[int]:
        """The reply up to its end-of-turn token; what the template adds after that is never generated."""
        special = set(self.tokenizer.all_special_ids)
        ends = [i for i, token in enumerate(reply_ids) if token in special]
        cut = ends[-1] + 1 if ends else len(reply_ids)
        return reply_ids[:cut] + [IGNORE_INDEX] * (len(reply_ids) - cut)


def _leading_system(messages: list[Message]) -> list[Message]:
    count = next((i for i, m in enumerate(messages) if m["role"] != "system"), len(messages))
    return messages[:count]


def _turns(messages: list[Message]) -> list[tuple[list[Message], Message]]:
    """(what was said since the last reply, the reply) for each assistant message; messages after the last
    reply have nothing to learn from and are left out."""
    turns: list[tuple[list[Message], Message]] = []
    asked: list[Message] = []
    for message in messages:
        if message["role"] == "assistant":
            turns.append((asked, message))
            asked = []
        else:
            asked.append(message)
    return turns


def text_windows(ids: list[int], length: int) -> list[Example]:
    """Consecutive windows of ``length`` tokens, every token a label (a window of one has nothing to predict)."""
    return [
        Example(ids[i : i + length], ids[i : i + length])
        for i in range(0, len(ids) - 1, length)
        if len(ids[i : i + length]) > 1
    ]


def hold_out(examples: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """(train, validation): the last ``fraction`` of the examples is held out, at least one of each."""
    if len(examples) < 2:
        raise DataError("fine-tuning needs at least two examples: one to train on, one to validate")
    n_val = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    return examples[:-n_val], examples[-n_val:]


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


def file_examples(
    tokenizer: Any, data: str | Path, max_tokens: int, loss_on: Literal["assistant", "all"]
) -> list[Example]:
    """Training examples from chat JSONL or plain text, checked for emptiness and binary content."""
    if is_chat_file(data):
        if not getattr(tokenizer, "chat_template", None):
            raise DataError(f"{data} holds chats, but the model's tokenizer has no chat template")
        renderer = ChatRenderer(tokenizer, loss_on=loss_on, max_tokens=max_tokens)
        examples = [e for chat in read_chats(data) for e in renderer.examples(chat)]
        if not examples:
            raise DataError(f"{data} has no conversation with an assistant reply to learn from")
        return examples
    ids = tokenizer(load_clean_text(data), add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) < 2 * max_tokens:
        raise DataError(
            f"{data} holds {len(ids)} tokens: too little for one training and one validation window "
            f"of max_length {max_tokens}; use a shorter --max-length or more data"
        )
    return text_windows(ids, max_tokens)
