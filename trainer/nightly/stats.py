"""The few statistics the gate, the canary and `trainer status` rest on, written out (no SciPy needed).

- auc: how often a liked reply scores above a disliked one (the Mann-Whitney U statistic over its maximum);
- paired_auc_difference: two scorings of the same replies compared, with DeLong's standard error;
- pair_accuracy, paired_pair_difference: the same for pairs of replies to one prompt that members rated apart
  (a /retry, a comparison, one question asked twice): how often the preferred reply scores higher, and two
  scorings compared with a standard error clustered by prompt (pairs of one prompt share replies);
- paired_mean_difference: two models' mean of one measure on the same items, with the standard error of the
  mean of their per-item differences (the paired t statistic's);
- wilson: the Wilson score interval of a proportion (Wilson 1927), sound for small counts and rates near 0 or 1;
- lower_tail_z: the one-sided two-proportion z-test with the pooled proportion, for "is A's rate below B's?".
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


def auc(scores: list[float], liked: list[bool]) -> float | None:
    """P(a liked reply's score > a disliked one's), ties counted half; None without one of each."""
    ranked = sorted(zip(scores, liked, strict=True), key=lambda pair: pair[0])
    good = sum(liked)
    bad = len(liked) - good
    if not good or not bad:
        return None
    # rank-sum form: O(n log n) rather than every liked-disliked pair; tied scores share their mean rank
    rank_sum, index = 0.0, 0
    while index < len(ranked):
        end = index
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[index][0]:
            end += 1
        mean_rank = (index + end) / 2 + 1
        rank_sum += mean_rank * sum(1 for _, y in ranked[index : end + 1] if y)
        index = end + 1
    return (rank_sum - good * (good + 1) / 2) / (good * bad)


@dataclass
class RankingDifference:
    """Two scorings of the same rated replies compared, by AUC or by pair accuracy: a less b, with the standard
    error of the difference."""

    a: float
    b: float
    se: float

    @property
    def difference(self) -> float:
        return self.a - self.b

    @property
    def z(self) -> float:
        if self.se > 0:
            return self.difference / self.se
        return 0.0 if self.difference == 0 else math.copysign(math.inf, self.difference)


def paired_auc_difference(a: list[float], b: list[float], liked: list[bool]) -> RankingDifference | None:
    """DeLong, DeLong and Clarke-Pearson 1988: the variance of the difference of two correlated AUCs from
    each liked and each disliked reply's placement values; None without one of each class."""
    good = [i for i, y in enumerate(liked) if y]
    bad = [i for i, y in enumerate(liked) if not y]
    if not good or not bad:
        return None

    def placements(scores: list[float]) -> tuple[list[float], list[float]]:
        def psi(x: float, y: float) -> float:
            return 1.0 if x > y else 0.5 if x == y else 0.0

        v10 = [sum(psi(scores[i], scores[j]) for j in bad) / len(bad) for i in good]
        v01 = [sum(psi(scores[i], scores[j]) for i in good) / len(good) for j in bad]
        return v10, v01

    def covariance(x: list[float], y: list[float]) -> float:
        if len(x) < 2:
            return 0.0
        mx, my = sum(x) / len(x), sum(y) / len(y)
        return sum((p - mx) * (q - my) for p, q in zip(x, y, strict=True)) / (len(x) - 1)

    a10, a01 = placements(a)
    b10, b01 = placements(b)
    variance = (covariance(a10, a10) + covariance(b10, b10) - 2 * covariance(a10, b10)) / len(good) + (
        covariance(a01, a01) + covariance(b01, b01) - 2 * covariance(a01, b01)
    ) / len(bad)
    return RankingDifference(a=sum(a10) / len(good), b=sum(b10) / len(good), se=math.sqrt(max(0.0, variance)))


Pair = tuple[int, int]  # (preferred, other): positions of two replies to one prompt, rated apart


def _right(scores: list[float], pair: Pair) -> float:
    preferred, other = scores[pair[0]], scores[pair[1]]
    return 1.0 if preferred > other else 0.5 if preferred == other else 0.0


def prompt_pairs(liked: list[bool], prompts: Sequence[Hashable]) -> list[Pair]:
    """Every liked reply paired with every disliked reply to the same prompt (positions in ``liked``)."""
    by_prompt: dict[Hashable, list[int]] = {}
    for position, prompt in enumerate(prompts):
        by_prompt.setdefault(prompt, []).append(position)
    return [
        (i, j) for positions in by_prompt.values() for i in positions for j in positions if liked[i] and not liked[j]
    ]


def pair_accuracy(scores: list[float], pairs: list[Pair]) -> float | None:
    """How often the preferred reply of a pair scores above the other (ties half); None without pairs."""
    return sum(_right(scores, pair) for pair in pairs) / len(pairs) if pairs else None


def paired_pair_difference(
    a: list[float], b: list[float], pairs: list[Pair], clusters: list[int]
) -> RankingDifference | None:
    """Two scorings' pair accuracies on the same pairs, a less b, with the standard error of the difference
    clustered by ``clusters`` (each pair's prompt: pairs of one prompt share replies, so they are not
    independent; the cluster-robust variance of a ratio estimator). None without pairs."""
    if not pairs:
        return None
    differences: dict[int, float] = {}
    sizes: dict[int, int] = {}
    for pair, cluster in zip(pairs, clusters, strict=True):
        differences[cluster] = differences.get(cluster, 0.0) + _right(a, pair) - _right(b, pair)
        sizes[cluster] = sizes.get(cluster, 0) + 1
    n, g = len(pairs), len(differences)
    mean = sum(differences.values()) / n
    spread = sum((differences[c] - sizes[c] * mean) ** 2 for c in differences)
    variance = g / (g - 1) * spread / n**2 if g > 1 else 0.0
    accuracy_a, accuracy_b = pair_accuracy(a, pairs), pair_accuracy(b, pairs)
    assert accuracy_a is not None and accuracy_b is not None
    return RankingDifference(a=accuracy_a, b=accuracy_b, se=math.sqrt(variance))


def paired_mean_difference(a: list[float], b: list[float]) -> RankingDifference | None:
    """Mean of ``a`` against mean of ``b``, item by item; None with fewer than two items."""
    if len(a) != len(b) or len(a) < 2:
        return None
    differences = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(differences) / len(differences)
    variance = sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)
    return RankingDifference(a=sum(a) / len(a), b=sum(b) / len(b), se=math.sqrt(variance / len(differences)))


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def wilson(successes: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % (by default) Wilson score interval of successes / total; (0, 1) for no trials."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ZTest:
    z: float
    p_value: float  # of "A's rate is below B's" (lower tail)


def lower_tail_z(successes_a: int, total_a: int, successes_b: int, total_b: int) -> ZTest | None:
    """One-sided two-proportion z-test (pooled): the evidence that A's rate is below B's; None without trials
    on both sides or when every trial went the same way (no variance to test with)."""
    if total_a <= 0 or total_b <= 0:
        return None
    pooled = (successes_a + successes_b) / (total_a + total_b)
    variance = pooled * (1 - pooled) * (1 / total_a + 1 / total_b)
    if variance <= 0:
        return None
    z = (successes_a / total_a - successes_b / total_b) / math.sqrt(variance)
    return ZTest(z=z, p_value=normal_cdf(z))
