import math

import pytest

from trainer.ngram import KneserNeyLM


def test_trigram_perplexity_matches_the_hand_computation():
    # Corpus "abcab", order 3, discount D = 0.5; the base distribution is uniform over {a, b, c, unknown}: 1/4.
    #
    # Counts.  trigrams (plain counts, the top order): abc 1, bca 1, cab 1
    #          bigrams (continuation counts: distinct symbols seen before them): ab 1 (c_ab), bc 1 (a_bc),
    #              ca 1 (b_ca) -- the first "ab" of the corpus has nothing before it and adds nothing
    #          unigrams (continuation counts): a 1 (c_a), b 1 (a_b), c 1 (b_c); their total is 3, 3 types
    # Unigram:  P1(w) = (1 - 0.5)/3 + 0.5 * 3/3 * 1/4 = 1/6 + 1/8 = 7/24 for a, b, c; unknown: 1/8
    #
    # Score "abcb" with no history:
    #   P(a)      = P1(a)                                                         = 7/24
    #   P(b | a)  = bigram, history "a" (total 1, 1 type): (1 - .5)/1 + .5 * 1/1 * 7/24     = 31/48
    #   P(c | ab) = bigram "b": 1/2 + .5 * 7/24 = 31/48;
    #               trigram "ab" (total 1, 1 type): (1 - .5)/1 + .5 * 1/1 * 31/48        = 79/96
    #   P(b | bc) = bigram "c": count(cb) = 0, so 0 + .5 * 1/1 * 7/24 = 7/48;
    #               trigram "bc": count(bcb) = 0, so 0 + .5 * 1/1 * 7/48                = 7/96
    # Product = (7 * 31 * 79 * 7) / (24 * 48 * 96 * 96) = 120001 / 10616832
    # Perplexity = (10616832 / 120001) ** (1/4) = 88.4729... ** 0.25 = 3.0669...
    lm = KneserNeyLM(order=3, discount=0.5).fit("abcab")

    assert lm.prob("a", "") == pytest.approx(7 / 24)
    assert lm.prob("b", "a") == pytest.approx(31 / 48)
    assert lm.prob("c", "ab") == pytest.approx(79 / 96)
    assert lm.prob("b", "bc") == pytest.approx(7 / 96)
    assert lm.perplexity("abcb") == pytest.approx((10616832 / 120001) ** 0.25)
    assert lm.perplexity("abcb") == pytest.approx(3.0669, abs=1e-4)
    # an unseen symbol: bigram "a" passes on half of the unigram's unknown share, 0.5 * 1/8
    assert lm.prob("z", "a") == pytest.approx(1 / 16)


def test_every_conditional_distribution_sums_to_one_and_unseen_text_is_finite():
    text = "the quick brown fox jumps over the lazy dog; the dog sleeps. " * 5
    lm = KneserNeyLM(order=5).fit(text)
    for context in ["", "t", "the ", "the q", "zzzz", "dog; "]:
        total = sum(lm.distribution(context).values()) + lm.prob("\x00unseen", context)
        assert total == pytest.approx(1.0)
    assert math.isfinite(lm.perplexity("a zebra!"))


def test_a_higher_order_predicts_structured_text_better():
    text = "abcdefgh" * 50
    held_out = "abcdefghabcdefgh"
    assert KneserNeyLM(order=3).fit(text).perplexity(held_out) < KneserNeyLM(order=1).fit(text).perplexity(held_out)


def test_greedy_generation_follows_the_training_text():
    lm = KneserNeyLM(order=4).fit("hello world<END>" * 20)
    assert "".join(lm.generate("hel", max_symbols=50, stop=["<END>"])) == "lo world"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="order"):
        KneserNeyLM(order=0)
    with pytest.raises(ValueError, match="discount"):
        KneserNeyLM(order=3, discount=1.5)
    with pytest.raises(ValueError, match="non-empty"):
        KneserNeyLM(order=3).fit("")
