"""A chat's rolling summary: how a fold asks the model to update it with the turns that left the window, and
whether its answer holds only what was said.

A summary may word things its own way, but each of its content words must come from the turns it folds (or the
summary before it). The default model's summaries were mostly invented ("User: I'd love to go to Lisbon and
Sintra!" where nobody named Sintra); a summary that fails this check is not kept, so /memory and prompts never
carry text that the member or the bot did not say."""

from __future__ import annotations

from collections.abc import Sequence

from brain.api_models import SamplingParams, Turn
from brain.memory.recall import terms

# the words a summary needs to say who said what, whatever the conversation was about
FRAMING = frozenset(
    terms(
        """user member assistant bot conversation summary earlier asked asks wants wanted would like likes liked
        said says talked discussed mentioned told shared plans planned interested suggested recommended
        question questions answer answered about also both their they them he she his her name named"""
    )
)


def unsaid_words(summary: str, sources: list[str]) -> list[str]:
    """The content words of ``summary`` (as recall stems them) that none of ``sources`` holds."""
    said = {term for text in sources for term in terms(text)} | FRAMING
    # two letters or fewer: the tails of contractions ("I'd"), not content
    return sorted({term for term in terms(summary) if term not in said and len(term) > 2 and not term.isdigit()})


def faithful(summary: str, sources: list[str]) -> bool:
    return not unsaid_words(summary, sources)


def fold_messages(summary: str, lines: Sequence[Turn]) -> list[dict[str, str]]:
    """The chat messages that ask the model for ``summary`` updated with ``lines``."""
    said = "\n".join(f"{turn.role}: {turn.text}" for turn in lines)
    instructions = (
        "Update the summary of a conversation. Keep facts about the user (name, preferences, "
        "plans) and open questions; at most three sentences.\n\n"
        f"Summary so far: {summary or '(none)'}\n\nNew lines:\n{said}\n\nUpdated summary:"
    )
    return [{"role": "user", "content": instructions}]


def fold_sampling(max_new_tokens: int) -> SamplingParams:
    return SamplingParams(
        temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.1, max_new_tokens=max_new_tokens,
        dry_multiplier=0.0,  # a summary repeats what was said: DRY would push it to other words
    )  # fmt: skip
