"""Pairs of replies to one prompt that members rated apart (a /retry, a comparison, a question asked twice) judge an
implied reward without the prompts' constants in the way: the gate, the step a night keeps and the reward model's
check use them where there are enough, and the AUC across prompts where there are not."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from tests.trainer.nightly.ratings_helpers import TOPICS, retry_pairs
from tests.trainer.nightly.test_few_likes import reward_step, toy_ratings
from trainer.core.examples import ChatRenderer, Example, PairExample, RatedExample
from trainer.core.finetuning import PreferenceData, pair_score
from trainer.core.models import load_model
from trainer.nightly.gate import decide
from trainer.nightly.ratings import heldout_replies
from trainer.nightly.reward import rated_examples
from trainer.nightly.scoring import Scores
from trainer.nightly.stats import auc, pair_accuracy, paired_pair_difference, prompt_pairs
from trainer.settings import EvaluationSettings, PreferenceSettings, RewardModelSettings


def test_a_pair_is_a_liked_and_a_disliked_reply_to_one_prompt() -> None:
    liked = [True, False, False, True, True, False]
    prompts = ["a", "a", "a", "b", "b", "c"]
    assert prompt_pairs(liked, prompts) == [(0, 1), (0, 2)]  # b has no disliked reply, c no liked one


def test_pair_accuracy_does_not_see_a_constant_per_prompt_that_an_auc_across_prompts_does() -> None:
    # each prompt's two replies: the liked one scores 1 above the other, on top of the prompt's own constant
    constants = [-4.0, 3.0, -1.0, 5.0, 0.0, -2.5, 2.0, -3.5]
    scores = [c + bonus for c in constants for bonus in (1.0, 0.0)]
    liked = [True, False] * len(constants)
    pairs = prompt_pairs(liked, [i // 2 for i in range(len(scores))])

    assert pair_accuracy(scores, pairs) == 1.0
    assert auc(scores, liked) < 0.65  # across prompts the constants decide most comparisons


def test_the_paired_difference_is_clustered_by_prompt() -> None:
    # prompt 0: three pairs, a right on all, b wrong on all; prompts 1 and 2: one pair each, both right
    pairs = [(0, 1), (0, 2), (0, 3), (4, 5), (6, 7)]
    clusters = [0, 0, 0, 1, 2]
    a = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    b = [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]

    difference = paired_pair_difference(a, b, pairs, clusters)

    assert difference is not None
    assert (difference.a, difference.b) == (1.0, 0.4)
    # per prompt: differences 3, 0, 0 over 3, 1, 1 pairs; mean 0.6; G/(G-1) * sum (d_g - n_g * 0.6)^2 / n^2
    spread = (3 - 3 * 0.6) ** 2 + (0 - 0.6) ** 2 + (0 - 0.6) ** 2
    assert difference.se == pytest.approx(math.sqrt(3 / 2 * spread / 25))
    # as five independent pairs the same differences would look surer: the clustering is what keeps it honest
    independent = paired_pair_difference(a, b, pairs, [0, 1, 2, 3, 4])
    assert independent is not None and independent.se < difference.se
    assert paired_pair_difference(a, b, [], []) is None


def scored(name: str, rewards: list[float], liked: list[bool], prompts: list[int]) -> Scores:
    pairs = prompt_pairs(liked, prompts)
    return Scores(
        name=name, test_ppl=10.0, general_ppl=20.0, bleu=0.0, chrf=0.0, answers_right=[True], rated=len(rewards),
        reward_auc=auc(rewards, liked), rewards=rewards, liked=liked, pairs=pairs,
        pair_prompts=[prompts[i] for i, _ in pairs], pair_accuracy=pair_accuracy(rewards, pairs),
    )  # fmt: skip


def held_out_comparisons(prompts: int, seed: int = 0) -> tuple[list[bool], list[int], list[float]]:
    """A held-out set of comparisons: for each prompt the reply a member chose (liked) and the other, and each
    prompt's constant of the implied reward (large beside what sets the two replies apart)."""
    rng = random.Random(seed)
    liked = [True, False] * prompts
    owner = [i // 2 for i in range(2 * prompts)]
    constants = [rng.gauss(0.0, 3.0) for _ in range(prompts)]
    return liked, owner, [constants[p] for p in owner]


def test_where_enough_pairs_are_held_out_the_gate_judges_by_them() -> None:
    liked, owner, constant = held_out_comparisons(30)
    base = scored("base", [0.0] * 60, liked, owner)
    rng = random.Random(1)
    # a candidate that learned which reply of each pair members prefer, on top of each prompt's constant
    learned = scored("candidate", [c + (0.5 if y else 0.0) for c, y in zip(constant, liked, strict=True)], liked, owner)
    # one that moved each reply at random: it gets some pairs right by chance
    noisy = scored("candidate", [c + rng.gauss(0.0, 0.5) for c in constant], liked, owner)
    settings = EvaluationSettings()
    assert learned.reward_auc is not None and learned.reward_auc < 0.7, "across prompts it hardly shows"

    accepted = decide(learned, base, base, settings)
    refused = decide(noisy, base, base, settings)
    by_auc = decide(learned, base, base, settings.model_copy(update={"min_heldout_pairs": 31}))

    assert accepted.promote, accepted.reasons
    assert "30 held-out pairs of a liked and a disliked reply to one prompt (30 prompts)" in accepted.reasons[0]
    assert "puts the liked one first in 100.0% against base's 50.0%" in accepted.reasons[0]
    assert not refused.promote
    assert "(clustered by prompt), within the 1.65 needed" in refused.reasons[0]
    assert not by_auc.promote and "(DeLong), within the 1.65 needed" in by_auc.reasons[0]


def example(n: int) -> Example:
    return Example(ids=[1, 2, n], labels=[-100, 2, n])


def test_a_night_keeps_the_step_that_orders_the_validation_pairs_given_enough_of_them() -> None:
    pairs = [PairExample(example(2 * k), example(2 * k + 1)) for k in range(6)]
    lone = [RatedExample(reply=example(20 + k), desirable=k == 0, mismatched=example(30)) for k in range(4)]
    data = PreferenceData(PreferenceSettings(), val_pairs=pairs, val_rated=lone)
    positions = data.val_pair_positions()
    assert data.selects_by_pairs() and data.selects()
    assert positions[0] == (4, 5) and data.val_ratings()[2][4:6] == [True, False]

    # step A puts the chosen reply of every pair first, each pair at its own level; step B ranks all replies
    # well across prompts but puts two pairs the wrong way round
    step_a = [0.0] * 4 + [v for k in range(6) for v in (k + 0.1, float(k))]
    step_b = [0.0] * 4 + [v for k in range(6) for v in ((1.0, 0.0) if k < 4 else (0.0, 1.0))]
    assert pair_score(step_a, positions) > pair_score(step_b, positions)
    assert pair_score(step_a, []) == 0.5
    fewer = PreferenceData(PreferenceSettings(select_min_pairs=7), val_pairs=pairs, val_rated=lone)
    assert not fewer.selects_by_pairs() and fewer.selects(), "fewer pairs: the AUC over every validation reply"


def test_the_reward_model_is_checked_on_pairs_where_there_are_enough(tiny_model_dir: Path) -> None:
    torch.manual_seed(0)
    topics = [f"{t} {n}" for n in range(3) for t in TOPICS]
    train, val = toy_ratings(topics[:32]) + retry_pairs(topics[:8]), toy_ratings(topics[32:40])
    heldout = retry_pairs(topics[40:])  # 8 prompts, each a liked and a disliked reply: 8 pairs
    # every rating is scored by a head fitted without its prompt: the pairs of all three splits check it
    renderer = ChatRenderer(load_model(str(tiny_model_dir), device="cpu").tokenizer, max_tokens=256)
    everyone = rated_examples(renderer, train) + rated_examples(renderer, val) + rated_examples(renderer, heldout)
    pairs = len(prompt_pairs([r.liked for r in everyone], [r.group for r in everyone]))
    classes = min(sum(r.liked for r in everyone), sum(not r.liked for r in everyone))

    by_pairs, _ = reward_step(
        tiny_model_dir, RewardModelSettings(min_per_class=classes + 1, min_pairs=pairs, min_auc=0.8)
    )
    too_few, _ = reward_step(
        tiny_model_dir, RewardModelSettings(min_per_class=classes + 1, min_pairs=pairs + 1, min_auc=0.8)
    )
    check = by_pairs.train(train, val, heldout)
    unjudged = too_few.train(train, val, heldout)

    assert pairs > 8 and check.heldout_pairs == pairs and check.heldout_pair_accuracy is not None
    assert check.heldout == len(everyone) and check.folds == 5
    assert check.passed and check.heldout_pair_accuracy >= 0.8, check
    assert f"of {pairs} pairs of a liked and a disliked reply to one prompt right" in check.reason
    assert f"judged from {classes + 1} of each class or {pairs + 1} pairs" in unjudged.reason
    assert not unjudged.passed


def test_held_out_replies_carry_their_pairs(tiny_model_dir: Path) -> None:
    renderer = ChatRenderer(load_model(str(tiny_model_dir), device="cpu").tokenizer, max_tokens=256)
    held = heldout_replies(renderer, retry_pairs(TOPICS[:5]) + toy_ratings(TOPICS[5:9]))
    assert len(held.replies) == len(held.liked) == 14
    assert len(held.pairs) == 5 and len(set(held.pair_prompts)) == 5
    assert all(held.liked[i] and not held.liked[j] for i, j in held.pairs)
