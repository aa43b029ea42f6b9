"""Whether a rolling summary holds only what was said: a summary may word things its own way, but each of its
content words must come from the turns it folds (or the summary before it). The default model's summaries were
mostly invented ("User: I'd love to go to Lisbon and Sintra!" where nobody named Sintra); a summary that fails
this check is not kept, so /memory and prompts never carry text that the member or the bot did not say."""

from __future__ import annotations

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
