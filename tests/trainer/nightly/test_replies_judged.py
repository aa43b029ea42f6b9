"""The gate judges a candidate by what it will send members: its own replies to the held-out prompts against
live's, drawn alike and scored by the night's reward model, once that model passed its held-out check."""

from __future__ import annotations

import contextlib
import copy
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from brain.api_models import SamplingParams
from tests.trainer.nightly.ratings_helpers import TOPICS, liked_reply, question, rated_turn
from tests.trainer.nightly.test_few_likes import reward_step, scores, toy_ratings
from trainer.nightly.gate import decide
from trainer.nightly.reward import RepliesJudged, RewardStep
from trainer.nightly.stats import paired_mean_difference
from trainer.settings import EvaluationSettings, RewardModelSettings


def test_the_paired_mean_difference_is_the_mean_of_per_item_differences_with_its_standard_error() -> None:
    a, b = [0.9, 0.8, 0.7, 0.6], [0.5, 0.6, 0.2, 0.6]
    paired = paired_mean_difference(a, b)

    differences = [0.4, 0.2, 0.5, 0.0]
    mean = sum(differences) / 4
    se = math.sqrt(sum((d - mean) ** 2 for d in differences) / 3 / 4)
    assert paired is not None
    assert (paired.a, paired.b, paired.difference, paired.se) == pytest.approx((0.75, 0.475, mean, se))
    assert paired_mean_difference([1.0], [0.0]) is None  # one item has no spread to judge by
    assert paired_mean_difference([1.0, 2.0], [0.0]) is None


SERVED = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0)


def judged(candidate: float, live: float, se: float) -> RepliesJudged:
    return RepliesJudged(live="community@1", prompts=30, samples=2, candidate_like=candidate, live_like=live, se=se)


def test_judged_by_replies_the_gate_refuses_an_advantage_inside_the_noise_and_accepts_a_clear_one() -> None:
    liked = [i % 4 == 0 for i in range(60)]
    rng = random.Random(0)
    live_rewards = [rng.gauss(0.3 if y else 0.0, 1.0) for y in liked]
    live = scores("community@1", live_rewards, liked)
    # on ratings, this candidate is clearly better: judged by its replies it is not, and its replies decide
    candidate = scores("candidate", [r + (2.0 if y else 0.0) for r, y in zip(live_rewards, liked, strict=True)], liked)
    settings = EvaluationSettings()

    noisy = decide(candidate, live, live, settings, judged(0.46, 0.40, 0.05))
    clear = decide(candidate, live, live, settings, judged(0.62, 0.40, 0.05))
    worse = decide(candidate, live, live, settings, judged(0.30, 0.40, 0.01))
    by_ratings = decide(candidate, live, live, settings)

    assert by_ratings.promote and "implied reward" in by_ratings.reasons[0]
    assert not noisy.promote and "read as liked 46.0% of the time against community@1's 40.0%" in noisy.summary
    assert "1.20 standard errors (paired by prompt), within the 1.65 needed" in noisy.summary
    assert clear.promote and "4.40 standard errors (paired by prompt), beyond the 1.65 needed" in clear.reasons[0]
    assert not worse.promote and not worse.members_decide
    # the general guard still holds every candidate
    forgetful = decide(candidate.model_copy(update={"general_ppl": 30.0}), live, live, settings, judged(0.9, 0.4, 0.05))
    assert not forgetful.promote and "general-prose perplexity 30.00" in forgetful.summary


def trained_step(tiny_model_dir: Path, **settings: Any) -> tuple[RewardStep, Any, list[list[dict[str, Any]]]]:
    torch.manual_seed(0)
    step, model = reward_step(
        tiny_model_dir, RewardModelSettings(min_per_class=2, min_auc=0.8, max_new_tokens=12, **settings)
    )
    topics = [f"{t} {n}" for n in range(3) for t in TOPICS]
    step.train(toy_ratings(topics[:32]), toy_ratings(topics[32:40]), toy_ratings(topics[40:]))
    assert step.check.passed, step.check.reason
    heldout = [rated_turn(question(topic), liked_reply(topic), [1]) for topic in topics[40:]]
    return step, model, step.prompts_of(heldout, 64)


def liking(model: Any, tokenizer: Any) -> Any:
    """The same model with its decoding pushed towards the liked replies' opening words (each next token of
    "Happy to help! Here is a kind word about" once the ones before it are there): a candidate whose own replies
    read more like what members liked."""
    liked = copy.deepcopy(model)
    opening = tokenizer("Happy to help! Here is a kind word about", add_special_tokens=False).input_ids
    liked.generation_config.sequence_bias = {tuple(opening[: k + 1]): 8.0 for k in range(len(opening))}
    return liked


def test_a_candidate_whose_own_replies_read_as_liked_passes_and_one_that_replies_as_live_does_not(
    tiny_model_dir: Path,
) -> None:
    step, model, prompts = trained_step(tiny_model_dir)
    serving = ("base", contextlib.nullcontext(model))

    same = step.judge(prompts, contextlib.nullcontext(model), serving, SERVED)
    better = step.judge(prompts, contextlib.nullcontext(liking(model, step.tokenizer)), serving, SERVED)

    assert same is not None and better is not None
    assert (same.prompts, same.samples) == (len(prompts), 2) and len(prompts) == 8
    # the same model, drawn from with the same random numbers, replies the same: no difference, no spread
    assert same.candidate_like == pytest.approx(same.live_like) and same.se == pytest.approx(0.0)
    assert better.live_like == pytest.approx(same.live_like)
    assert better.candidate_like > better.live_like + 0.2, better
    settings = EvaluationSettings()
    live = scores("base", [0.0] * 4, [True, False, True, False])
    assert not decide(live, live, live, settings, same).promote
    assert decide(live, live, live, settings, better).promote


def test_no_judgment_without_a_trusted_reward_model_or_samples(tiny_model_dir: Path) -> None:
    step, model, prompts = trained_step(tiny_model_dir, judge_samples=0)
    serving = ("base", contextlib.nullcontext(model))
    assert step.judge(prompts, contextlib.nullcontext(model), serving, SERVED) is None
    step.settings = step.settings.model_copy(update={"judge_samples": 2})
    assert step.judge(prompts[:1], contextlib.nullcontext(model), serving, SERVED) is None  # one prompt: no spread
    step.check.passed = False
    assert step.judge(prompts, contextlib.nullcontext(model), serving, SERVED) is None


def test_the_judge_draws_as_members_are_served(tiny_model_dir: Path) -> None:
    step, model, prompts = trained_step(tiny_model_dir)
    serving = ("base", contextlib.nullcontext(model))
    greedy = SamplingParams(temperature=0.0)
    cold = SamplingParams(temperature=0.3, top_p=0.9, top_k=50, repetition_penalty=1.05)

    once = step.judge(prompts, contextlib.nullcontext(liking(model, step.tokenizer)), serving, greedy)
    cold_drawn = step.draw(model, prompts, 2, cold)
    hot_drawn = step.draw(model, prompts, 2)

    # a greedy persona's members get one reply to a prompt: one is drawn, and it is the greedy one
    assert once is not None and once.samples == 1
    assert step.draw(model, prompts, 1, greedy).replies == step.draw(model, prompts, 1, greedy).replies

    # at the persona's temperature of 0.3 the replies start as the greedy one more often than at the reward model's 1.0
    first = [replies[0][:4] for replies in step.draw(model, prompts, 1, greedy).replies]

    def as_greedy(drawn: list[list[str]]) -> int:
        return sum(reply[:4] == start for replies, start in zip(drawn, first, strict=True) for reply in replies)

    assert as_greedy(cold_drawn.replies) > as_greedy(hot_drawn.replies)
