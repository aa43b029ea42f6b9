"""Facts about a member, and where their memory may be used.

A fact is a short sentence about the member ("My name is Alice."), stored with where it was stated: in a direct
chat with the bot or in a group chat. The same rule decides where facts and earlier turns may reach a prompt,
and which facts `/memory` lists in a chat (its reply is as public as the chat):

- in a direct chat: everything of the member's own (only they read it);
- in a group chat: only what they stated in that same group; what they said in direct chats only where the
  operator allows it (memory.share_direct_in_groups, off by default). Another group's is never used.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from typing import Any

from brain.api_models import MAX_FACT_CHARS, ChatKind, EarlierTurn, Fact, FactSource

# the prompt states every fact: a bound on their number (and size) keeps it short (a small model's context is 2k)
MAX_FACTS = 16
MAX_QUOTE_CHARS = 300

# how the store's script compares facts (Lua: string.lower, then runs of %s and %p as one space): ASCII only
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SPACE_OR_PUNCTUATION = re.compile(r"[\s!-/:-@\[-`{-~]+", re.ASCII)


def same_fact(a: str, b: str) -> bool:
    """Whether two facts are the same to the store (which keeps only the first)."""
    return _normalized(a) == _normalized(b)


def _normalized(text: str) -> str:
    return _SPACE_OR_PUNCTUATION.sub(" ", text.translate(_ASCII_LOWER)).strip()


def new_fact(text: str, source: FactSource, chat_id: str, chat_kind: ChatKind, quote: str = "") -> Fact:
    """A new fact; an extracted fact quotes the message it was picked out of."""
    return Fact(
        id=secrets.token_hex(4),
        text=" ".join(text.split())[:MAX_FACT_CHARS],
        source=source,
        chat_id=chat_id,
        chat_kind=chat_kind,
        ts=time.time(),
        quote=quote[:MAX_QUOTE_CHARS],
    )


def stored_fact(fact: Fact) -> dict[str, Any]:
    """``fact`` as the store takes it (JSON fields; no ``quote`` where there is none, as the store always kept)."""
    return fact.model_dump(mode="json", exclude_defaults=True)


def visible(item: Fact | EarlierTurn, chat_id: str, group: bool, share_direct: bool) -> bool:
    """Whether a fact or earlier turn of the member may be used in this chat."""
    if not group:
        return True
    if item.chat_kind is ChatKind.group:
        return item.chat_id == chat_id
    return share_direct and item.chat_kind is ChatKind.direct


def visible_facts(facts: list[Fact], chat_id: str, group: bool, share_direct: bool) -> list[Fact]:
    return [fact for fact in facts if visible(fact, chat_id, group, share_direct)]
