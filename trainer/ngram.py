"""An interpolated Kneser-Ney n-gram language model: the baseline every neural model is shown beside.

Written here rather than taken from nltk: nltk's `KneserNeyInterpolated` gives unseen symbols zero
probability (infinite perplexity on any text with a new character) and rescans all n-grams for every
lower-order probability, which makes a 5-gram on a megabyte of text take minutes to score.

The model, for an order N and a history h of the last N-1 symbols (Chen & Goodman 1998, eq. 26):

    P_n(w | h) = max(c_n(h w) - D_n, 0) / c_n(h)  +  D_n * T_n(h) / c_n(h) * P_{n-1}(w | h minus its first symbol)
    P_0(w)     = 1 / (|V| + 1)                       (uniform over the seen symbols and one unknown)

where, at the highest order, c_N is the plain count of the n-gram; at every lower order c_n is its
continuation count, the number of distinct symbols seen just before it (what makes Kneser-Ney better
than absolute discounting: "Francisco" is frequent but follows only "San"); c_n(h) is the sum of c_n(h w)
over w, and T_n(h) the number of distinct w with c_n(h w) > 0. A history never seen at order n
hands the lower order's probability through unchanged. D_n = n1 / (n1 + 2 n2) from the counts of
counts of order n (Ney, Essen and Kneser 1994), unless a fixed discount is given.
Every conditional distribution sums to one over the vocabulary plus the unknown symbol.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence

Symbol = Hashable


class KneserNeyLM:
    def __init__(self, order: int = 5, discount: float | None = None):
        if order < 1:
            raise ValueError(f"the order of an n-gram model must be at least 1, not {order}")
        if discount is not None and not 0 < discount <= 1:
            raise ValueError(f"a Kneser-Ney discount must be in (0, 1], not {discount}")
        self.order = order
        self.fixed_discount = discount
        self.vocab: set[Symbol] = set()
        self.counts: dict[int, dict[tuple, int]] = {}
        self.context_total: dict[int, dict[tuple, int]] = {}
        self.context_types: dict[int, dict[tuple, int]] = {}
        self.discount: dict[int, float] = {}

    def fit(self, sequence: Sequence[Symbol]) -> KneserNeyLM:
        seq = list(sequence)
        if not seq:
            raise ValueError("an n-gram model needs a non-empty training sequence")
        self.vocab = set(seq)
        plain = {n: Counter(zip(*(seq[i:] for i in range(n)), strict=False)) for n in range(1, self.order + 1)}
        for n in range(1, self.order + 1):
            if n == self.order:
                table = dict(plain[n])
            else:
                # continuation count: one for each distinct (n+1)-gram that ends in this n-gram
                table = dict(Counter(gram[1:] for gram in plain[n + 1]))
            total: dict[tuple, int] = defaultdict(int)
            types: dict[tuple, int] = defaultdict(int)
            for gram, count in table.items():
                total[gram[:-1]] += count
                types[gram[:-1]] += 1
            self.counts[n], self.context_total[n], self.context_types[n] = table, dict(total), dict(types)
            self.discount[n] = self.fixed_discount or _estimate_discount(table.values())
        return self

    def prob(self, symbol: Symbol, context: Sequence[Symbol] = ()) -> float:
        """P(symbol | the last order-1 symbols of context)."""
        history = tuple(context[-(self.order - 1) :]) if self.order > 1 else ()
        p = 1.0 / (len(self.vocab) + 1)
        for n in range(1, len(history) + 2):
            h = history[len(history) - n + 1 :]
            total = self.context_total[n].get(h, 0)
            if total == 0:
                continue
            d = self.discount[n]
            count = self.counts[n].get(h + (symbol,), 0)
            p = max(count - d, 0.0) / total + d * self.context_types[n][h] / total * p
        return p

    def nll(self, sequence: Sequence[Symbol], history: Sequence[Symbol] = ()) -> float:
        """Total negative log-likelihood of `sequence` in nats, each symbol given all that precedes it
        (`history` first, which is context only and is not scored)."""
        full = list(history) + list(sequence)
        start = len(history)
        k = self.order - 1
        return -sum(math.log(self.prob(full[i], full[max(0, i - k) : i])) for i in range(start, len(full)))

    def perplexity(self, sequence: Sequence[Symbol], history: Sequence[Symbol] = ()) -> float:
        return math.exp(self.nll(sequence, history) / len(sequence))

    def distribution(self, context: Sequence[Symbol] = ()) -> dict[Symbol, float]:
        """P(w | context) for every seen symbol w (the unknown symbol holds the rest)."""
        return {w: self.prob(w, context) for w in self.vocab}

    def generate(
        self,
        context: Sequence[Symbol],
        max_symbols: int,
        stop: Iterable[Sequence[Symbol]] = (),
        seed: int | None = None,
    ) -> list[Symbol]:
        """Greedy continuation (or sampled, given a seed) until a stop sequence or max_symbols."""
        rng = random.Random(seed) if seed is not None else None
        stops = [list(s) for s in stop]
        out: list[Symbol] = []
        full = list(context)
        order = sorted(self.vocab, key=repr)  # a fixed order, so ties break the same way every run
        for _ in range(max_symbols):
            dist = self.distribution(full[-(self.order - 1) :] if self.order > 1 else [])
            if rng is None:
                symbol = max(order, key=dist.__getitem__)
            else:
                symbol = rng.choices(order, weights=[dist[w] for w in order])[0]
            out.append(symbol)
            full.append(symbol)
            for s in stops:
                if s and out[-len(s) :] == s:
                    return out[: -len(s)]
        return out


def _estimate_discount(counts: Iterable[int]) -> float:
    """D = n1 / (n1 + 2 n2), the leave-one-out estimate; 0.75 where it is undefined."""
    spectrum = Counter(counts)
    n1, n2 = spectrum.get(1, 0), spectrum.get(2, 0)
    if n1 == 0 or n2 == 0:
        return 0.75
    return n1 / (n1 + 2 * n2)
