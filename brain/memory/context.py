"""What one prompt gets of a member's memory: their facts, and the earlier turns that match the new message."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from brain.api_models import EarlierTurn, Fact
from brain.memory.facts import visible
from brain.memory.recall import rank, terms

# turns that left the window, over all of a member's chats, kept for recall (oldest dropped first)
EARLIER_TURNS_KEPT = 400
# an earlier message is quoted whole up to this length (longer ones are cut): a few short quotes beat one essay
MAX_QUOTE_CHARS = 280
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")
_WH = {"what", "where", "when", "why", "who", "whom", "whose", "which", "how"}
_AUXILIARIES = {
    "am", "is", "are", "was", "were", "do", "does", "did", "have", "has", "had", "can", "could", "will", "would",
    "shall", "should", "may", "might", "must", "isn't", "aren't", "wasn't", "weren't", "don't", "doesn't",
    "didn't", "haven't", "hasn't", "hadn't", "can't", "couldn't", "won't", "wouldn't", "shouldn't",
}  # fmt: skip
_PRONOUNS = {"i", "you", "he", "she", "it", "we", "they", "there", "this", "that", "these", "those", "one"}
_DETERMINERS = {"the", "a", "an", "my", "your", "his", "her", "its", "our", "their", "any", "some", "anyone"}
# "Did I mention (that) I live in Porto": a question that carries what the member tells
_EMBEDDED = re.compile(
    r"\b(?:mention(?:ed)?|tell you|told you|say|said|know|knew|believe|guess|remember|realise|realize|hear|heard)"
    r"(?:\s+(?:to\s+)?you)?(?:\s+that)?\s+(?P<clause>(?:i|i'm|i've|i'd|i'll|my|we|we're|our)\b.*)$",
    re.IGNORECASE,
)
# "I live in Porto, did I mention?" / "My name is Ana, remember?": a statement with a question tag
_TAGGED = re.compile(r"^(?P<clause>(?:i|i'm|i've|i'd|my|we|our)\b[^?]*?),\s*[^,?]{1,30}\?$", re.IGNORECASE)


@dataclass(frozen=True)
class Memory:
    """The member's memory that this chat may use, as one prompt gets it (built by ``for_chat``)."""

    facts: list[str] = field(default_factory=list)
    # the member's own earlier messages that left the window, oldest first
    earlier: list[str] = field(default_factory=list)
    # the id of each fact and the chat of each earlier message, in the same order: what a kept turn quotes
    fact_ids: list[str] = field(default_factory=list)
    earlier_chats: list[str] = field(default_factory=list)
    # how many tokens of recalled messages one prompt may hold (0: none)
    recall_tokens: int = 0
    recall_count: int = 3

    @classmethod
    def for_chat(
        cls,
        facts: Sequence[Fact],
        earlier: Sequence[EarlierTurn],
        *,
        chat_id: str,
        group: bool,
        share_direct: bool,
        recall_tokens: int,
    ) -> Memory:
        """Only what may reach a prompt in this chat (facts.visible): the speaker's own, and in a group chat
        nothing from their direct chats unless the operator allows it."""
        seen: set[str] = set()
        messages, chats = [], []
        for turn in earlier:
            if turn.role != "user":
                continue
            text = statements(turn.text)
            if not text or text.lower() in seen:
                continue
            if visible(turn, chat_id, group, share_direct):
                seen.add(text.lower())
                messages.append(text)
                chats.append(turn.chat_id)
        shown = [f for f in facts if visible(f, chat_id, group, share_direct)]
        return cls(
            facts=[f.text for f in shown],
            earlier=messages if recall_tokens > 0 else [],
            recall_tokens=recall_tokens,
            fact_ids=[f.id for f in shown],
            earlier_chats=chats if recall_tokens > 0 else [],
        )

    def quoted(self, facts: list[str], recalled: list[str]) -> tuple[list[str], list[str]]:
        """The ids of these facts and the chats of these recalled messages (as a prompt's note quotes them)."""
        ids = sorted({i for text, i in zip(self.facts, self.fact_ids, strict=False) if text in facts})
        clipped = [_clip(text) for text in self.earlier]
        chats = sorted({c for text, c in zip(clipped, self.earlier_chats, strict=False) if text in recalled})
        return ids, chats

    def recalled(self, message: str) -> list[str]:
        """The earlier messages that match ``message``, best first, each cut to MAX_QUOTE_CHARS. A message that
        says nothing the facts do not say already is left out: a small model does worse with the same thing twice."""
        if not self.earlier or self.recall_tokens <= 0:
            return []
        known = {term for fact in self.facts for term in terms(fact)}
        fresh = [(i, score) for i, score in rank(message, self.earlier) if not set(terms(self.earlier[i])) <= known]
        return [_clip(self.earlier[index]) for index, _ in fresh[: self.recall_count]]


def statements(text: str) -> str:
    """What a message told, without its questions: "Which city should I visit?" says nothing about the member, and
    quoted before "Which city do I live in?" the default model answers with the city asked about (bench/recall.py).
    A question is known by its form, with or without "?"; what the member tells inside one is kept ("Did I
    mention I live in Porto?" keeps "I live in Porto.")."""
    kept = []
    for sentence in _SENTENCE_END.split(text.strip()):
        sentence = " ".join(sentence.split())
        if not sentence:
            continue
        if not is_question(sentence):
            kept.append(sentence)
        elif told := told_in_question(sentence):
            kept.append(told)
    return " ".join(kept)


def is_question(sentence: str) -> bool:
    """Whether ``sentence`` asks: it ends in "?", or its words are in a question's order (a wh-word before an
    auxiliary, "Where should I go"; an auxiliary before its subject, "Did you see it"), whatever its ending."""
    sentence = sentence.strip()
    if sentence.endswith("?"):
        return True
    if sentence.endswith("!"):
        return False  # "What a day!", "How lovely it was!"
    words = [w.strip(",;:\"'()").lower() for w in sentence.split()]
    if not words:
        return False
    first = words[0]
    if first in _WH or (first.endswith("'s") and first[:-2] in _WH):
        if first.endswith("'s"):
            return True  # "What's the best beach"
        # an auxiliary within the next three words, before any subject: "Which city should I visit", not
        # "When I was young I lived in Rome"; a partitive "of" phrase is not the subject: "Which of these books
        # should I read", "Who of you is coming"
        if words[1:2] == ["of"]:
            return any(word in _AUXILIARIES for word in words[2:6])
        for word in words[1:4]:
            if word in _AUXILIARIES:
                return True
            if word in _PRONOUNS:
                return False
        return False
    if first in _AUXILIARIES and len(words) > 1:
        second = words[1]
        if first in {"do", "have", "don't", "haven't"}:  # "Do come in", "Have a nice day" are not questions
            return second in _PRONOUNS - {"there", "this", "that", "these", "those", "one"}
        return second in _PRONOUNS or second in _DETERMINERS
    return False


def told_in_question(sentence: str) -> str:
    """What the member tells inside a question, as a sentence; "" where it only asks."""
    body = sentence.rstrip("?!. ")
    match = _EMBEDDED.search(body) or _TAGGED.match(sentence)
    if not match:
        return ""
    clause = match.group("clause").rstrip("?!., ")
    return clause[0].upper() + clause[1:] + "." if clause else ""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_QUOTE_CHARS else text[: MAX_QUOTE_CHARS - 1].rstrip() + "…"
