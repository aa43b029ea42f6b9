"""The tastes the feedback benchmark's members rate by: each a function of (prompt, reply) that returns +1
(liked), -1 (disliked) or None (no rating). Of different kinds, so that the bench shows the nightly loop
learning tastes it was not written for:

- ``short``: length. Replies of at most 25 words are liked (the base model pleases it about a quarter of
  the time).
- ``direct``: form. A reply that starts with the answer is liked: no greeting, praise of the question or
  filler first ("Sure!", "Great question!", "Oh, ...", "I'd be happy to ..."), and a first sentence of at
  most 12 words.
- ``plain``: content. Replies that apologise, refuse, hedge or talk about being an AI are disliked, and so
  are those that talk about the bot or the member ("I", "my", "you", "your") rather than the subject.
- ``sparse``: a taste the base model rarely meets (liked in at most 5 % of replies on day 0): one plain
  statement of at most 12 words about the subject only (no "I" or "you"), that starts with the answer and
  ends in a full stop (no exclamation, no question).

The base model's like-rates on day 0, from 140 first replies of the default model to the bench's prompts
(two day-0 runs, rated again offline by these rules): short 24 %, direct 32 %, plain 43 %, sparse 3 %.

Asked "which reply do you prefer?" (the bench's ``--compare-share``), a member picks the reply they like
and, where they like both or neither, the one nearer their taste (``NEARNESS``: how far a reply is from being
liked, in the taste's own terms); where the two are equally near, the member does not choose.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Rater = Callable[[str, str], int | None]
# higher is nearer to being liked; compared only between two replies to the same prompt
Nearness = Callable[[str, str], float]

SHORT_WORDS = 25
OPENERS = re.compile(
    r"^\W*(sure|of course|certainly|absolutely|great|good|what a|oh|ah|aw|well|hello|hi|hey|hmm|thanks|thank you"
    r"|i'?d|i would|i'?m|i am|i'?ll|as an?|that'?s a|alright|okay|ok|yes|no problem|happy|glad|wow|ooh|haha"
    r"|dear|my friend|friend|ahoy|greetings)\b",
    re.IGNORECASE,
)
NOT_PLAIN = re.compile(
    r"\b(sorry|apolog\w*|unfortunately|as an ai|an ai\b|language model|i can'?t|i cannot|i'?m (not )?able|"
    r"i am (not )?able|i'?m unable|i don'?t have|i do not have|i'?m not sure|i am not sure|i think|maybe|perhaps|"
    r"it depends|however)\b",
    re.IGNORECASE,
)
PERSONAL = re.compile(r"\b(i|i'm|i'd|i'll|i've|me|my|myself|you|your|you're|yours|yourself)\b", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def words(text: str) -> int:
    return len(text.split())


def first_sentence(reply: str) -> str:
    return SENTENCE_END.split(reply.strip(), maxsplit=1)[0]


def short(prompt: str, reply: str) -> int | None:
    """Length: liked when at most 25 words (and not empty)."""
    return 1 if 0 < words(reply) <= SHORT_WORDS else -1


def direct(prompt: str, reply: str) -> int | None:
    """Form: liked when the reply starts with the answer, no filler first, in a first sentence of at most 12
    words."""
    text = reply.strip()
    return 1 if text and not opener(text) and words(first_sentence(text)) <= 12 else -1


def plain(prompt: str, reply: str) -> int | None:
    """Content: disliked when it apologises, refuses, hedges, talks about being an AI, or about the bot or the
    member instead of the subject."""
    text = reply.strip()
    return -1 if not text or NOT_PLAIN.search(text) or PERSONAL.search(text) else 1


def sparse(prompt: str, reply: str) -> int | None:
    """Rare: liked only as one plain statement of at most 12 words about the subject (no "I" or "you") that
    starts with the answer and ends in a full stop."""
    return 1 if sparse_misses(reply) == 0 else -1


def opener(text: str) -> bool:
    return OPENERS.match(text.strip()) is not None


def misses(text: str) -> int:
    """The things a plain reply must not say, counted (apologies, hedges, "I" and "you")."""
    return len(NOT_PLAIN.findall(text)) + len(PERSONAL.findall(text))


def sparse_misses(reply: str) -> float:
    """The sparse taste's rules a reply breaks, then its words beyond 12 as a fraction of one rule (0: liked)."""
    text = reply.strip()
    broken = [
        words(text) == 0 or words(text) > 12,
        not text.endswith("."),
        "!" in text or "?" in text,
        opener(text),
        PERSONAL.search(text) is not None,
    ]
    return sum(broken) + max(0, words(text) - 12) / 100


TASTES: dict[str, Rater] = {"short": short, "direct": direct, "plain": plain, "sparse": sparse}
NEARNESS: dict[str, Nearness] = {
    "short": lambda prompt, reply: -words(reply),
    "direct": lambda prompt, reply: -100 * opener(reply) - words(first_sentence(reply)),
    "plain": lambda prompt, reply: -misses(reply),
    "sparse": lambda prompt, reply: -sparse_misses(reply),
}


def prefer(rater: Rater, nearness: Nearness | None, prompt: str, first: str, second: str) -> int | None:
    """Which of two replies to ``prompt`` a member prefers: 0 the first, 1 the second, None no choice (the
    same verdict and no nearer one, or a taste with no nearness)."""
    verdicts = rater(prompt, first), rater(prompt, second)
    if verdicts[0] != verdicts[1] and None not in verdicts:
        return 0 if verdicts[0] == 1 else 1
    if nearness is None:
        return None
    near = nearness(prompt, first), nearness(prompt, second)
    return None if near[0] == near[1] else (0 if near[0] > near[1] else 1)
