"""A small BM25 ranker over a member's earlier turns.

Lexical on purpose: it needs no model and no download, runs in microseconds per turn, and the turns that matter
most to a member's question ("what is my dog called?") share its content words ("my dog is called Biscuit").
Words are lower-cased, stripped of a few English suffixes, and common function words are left out, so that
"What is my name?" is ranked by "name" alone rather than by "my", which nearly every message holds.
"""

from __future__ import annotations

import math
import re
from collections import Counter

# Okapi BM25's usual constants: term frequency saturates around k1, and b scales by document length
K1 = 1.2
B = 0.75
_WORD = re.compile(r"[^\W_]+")
_SUFFIXES = ("ing", "ed", "es", "s")
STOPWORDS = frozenset(
    """a about after again all also am an and any are as at be because been before being but by can could did do
    does doing don for from had has have having he her here hers him his how i i'm if in into is it its just let
    like me more most my myself no not now of off on once only or other our ours out over own please same she
    should so some such tell than that the their theirs them then there these they this those through to too
    under until up us very was we were what when where which while who whom why will with would you your yours
    yourself hi hello hey thanks thank ok okay yes yeah know remember""".split()
)


def stem(word: str) -> str:
    """A light stemmer: 'called' and 'calls' -> 'call', 'lives' and 'living' -> 'liv' (the same stem is all
    that matters)."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def terms(text: str) -> list[str]:
    return [stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS]


def rank(query: str, documents: list[str]) -> list[tuple[int, float]]:
    """(index, score) of the documents that share a term with the query, best first (ties: the newer first)."""
    wanted = set(terms(query))
    if not wanted or not documents:
        return []
    bags = [Counter(terms(doc)) for doc in documents]
    average = sum(sum(bag.values()) for bag in bags) / len(bags) or 1.0
    holding = Counter(term for bag in bags for term in wanted if term in bag)
    scores = []
    for index, bag in enumerate(bags):
        length = sum(bag.values())
        score = 0.0
        for term in wanted:
            tf = bag.get(term, 0)
            if not tf:
                continue
            # Lucene's IDF: never negative, even for a term that most documents hold
            idf = math.log(1 + (len(bags) - holding[term] + 0.5) / (holding[term] + 0.5))
            score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        if score > 0:
            scores.append((index, score))
    scores.sort(key=lambda pair: (-pair[1], -pair[0]))
    return scores
