"""Learning when likes are rare: KTO's class weights follow each night's counts, a reward model learns what
liked and disliked replies share, its best-of-n pairs are used only when it ranks held-out ratings well, and
the gate promotes only on a paired difference beyond the noise of the held-out ratings."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from brain.adapters import COMMUNITY
from brain.api_models import SamplingParams
from brain.store import Store
from brain.store.client import connect
from tests.trainer.nightly.helpers import log_turns, nightly_settings
from tests.trainer.nightly.ratings_helpers import TOPICS, disliked_reply, liked_reply, question, rated_turn, store_rated
from trainer.core.examples import ChatRenderer, Example, RatedExample
from trainer.core.finetuning import PreferenceData
from trainer.core.models import load_model
from trainer.core.objectives import kto_class_weights
from trainer.nightly.gate import decide
from trainer.nightly.lora import onpolicy_examples
from trainer.nightly.ratings import split_groups
from trainer.nightly.reward import OnPolicyPair, RewardStep
from trainer.nightly.run import run_nightly
from trainer.nightly.scoring import Scores
from trainer.nightly.stats import auc
from trainer.settings import EvaluationSettings, PreferenceSettings, RewardModelSettings


def rated(liked: bool) -> RatedExample:
    example = Example(ids=[1, 2], labels=[-100, 2])
    return RatedExample(reply=example, desirable=liked, mismatched=example)


@pytest.mark.parametrize(("liked", "disliked"), [(3, 80), (40, 40), (70, 10)])
def test_kto_class_weights_follow_the_nights_counts(liked: int, disliked: int) -> None:
    data = PreferenceData(PreferenceSettings(), rated=[rated(True)] * liked + [rated(False)] * disliked)

    lambda_d, lambda_u = data.kto_weights()

    # the KTO paper's rule: the classes weigh the same in all (ratio 1 by default, within [1, 4/3])
    assert lambda_d * liked / (lambda_u * disliked) == pytest.approx(1.0)
    assert lambda_d * liked + lambda_u * disliked == pytest.approx(liked + disliked)
    if liked < disliked:
        assert lambda_d > 1 > lambda_u  # a rare like counts for more than a dislike


def test_kto_class_weights_keep_the_ratio_asked_for_and_the_fixed_setting() -> None:
    lambda_d, lambda_u = kto_class_weights(5, 95, ratio=4 / 3)
    assert lambda_d * 5 / (lambda_u * 95) == pytest.approx(4 / 3)
    assert kto_class_weights(0, 12) == (1.0, 1.0)  # one class only: nothing to balance
    with pytest.raises(ValueError):
        kto_class_weights(5, 95, ratio=2.0)
    fixed = PreferenceSettings(kto_class_weights="fixed", kto_desirable_weight=2.0, kto_undesirable_weight=0.5)
    assert PreferenceData(fixed, rated=[rated(True), rated(False)]).kto_weights() == (2.0, 0.5)


def reward_step(tiny_model_dir: Path, settings: RewardModelSettings) -> tuple[RewardStep, Any]:
    loaded = load_model(str(tiny_model_dir), device="cpu")
    renderer = ChatRenderer(loaded.tokenizer, max_tokens=256)
    eos = [loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    step = RewardStep(loaded.model, loaded.tokenizer, renderer, settings, device=loaded.device, eos_token_ids=eos)
    return step, loaded.model


def toy_ratings(topics: list[str]) -> list:
    """A taste a model can learn: three disliked replies for each liked one, the liked ones kind."""
    out = []
    for index, topic in enumerate(topics):
        liked = index % 4 == 0
        out.append(rated_turn(question(topic), (liked_reply if liked else disliked_reply)(topic), [1 if liked else -1]))
    return out


def test_the_reward_model_ranks_held_out_liked_replies_above_disliked_ones(tiny_model_dir: Path) -> None:
    torch.manual_seed(0)
    step, _ = reward_step(tiny_model_dir, RewardModelSettings(min_per_class=2, min_auc=0.8))
    topics = [f"{t} {n}" for n in range(3) for t in TOPICS]  # 48 prompts

    check = step.train(toy_ratings(topics[:32]), toy_ratings(topics[32:40]), toy_ratings(topics[40:]))

    assert (check.liked, check.disliked) == (8, 24)
    assert check.heldout_auc is not None and check.heldout_auc >= 0.9, check
    assert check.passed
    liked, disliked = step.scores(
        [
            (rated.turn.prompt, reply(topic))
            for topic in ["lighthouses", "apples"]
            for rated, reply in [(toy_ratings([topic])[0], liked_reply), (toy_ratings([topic])[0], disliked_reply)]
        ]
    )[:2]
    assert liked is not None and disliked is not None and liked > disliked


def test_the_reward_model_learns_a_taste_of_form_from_the_same_words_in_another_order(tiny_model_dir: Path) -> None:
    """Members who like a reply that starts with the answer: liked and disliked replies say the same words, the
    answer first or last."""
    torch.manual_seed(0)
    step, _ = reward_step(tiny_model_dir, RewardModelSettings(min_per_class=2, min_auc=0.8))

    def ratings(topics: list[str]) -> list:
        out = []
        for index, topic in enumerate(topics):
            answer, filler = f"{topic} are lovely.", "Oh, happy to help, thanks for asking!"
            liked = index % 2 == 0
            reply = f"{answer} {filler}" if liked else f"{filler} {answer}"
            out.append(rated_turn(question(topic), reply, [1 if liked else -1]))
        return out

    topics = [f"{t} {n}" for n in range(3) for t in TOPICS]
    check = step.train(ratings(topics[:32]), ratings(topics[32:40]), ratings(topics[40:]))

    assert check.heldout_auc is not None and check.heldout_auc >= 0.9, check
    assert check.passed


def test_the_reward_model_is_checked_on_every_rating_by_heads_that_never_saw_its_prompt(tiny_model_dir: Path) -> None:
    torch.manual_seed(0)
    topics = [f"{t} {n}" for n in range(3) for t in TOPICS]
    few_heldout = toy_ratings(topics[40:42])  # one liked and one disliked: alone they could judge nothing
    learnable, _ = reward_step(tiny_model_dir, RewardModelSettings(min_per_class=5, min_auc=0.8))
    check = learnable.train(toy_ratings(topics[:32]), toy_ratings(topics[32:40]), few_heldout)
    # ratings that follow no taste: the same kinds of replies, liked or disliked at random
    draw = random.Random(0)
    noise = [
        rated_turn(question(t), (liked_reply if i % 2 else disliked_reply)(t), [draw.choice([1, -1])])
        for i, t in enumerate(topics)
    ]
    unlearnable, _ = reward_step(tiny_model_dir, RewardModelSettings(min_per_class=5, min_auc=0.7))
    refused = unlearnable.train(noise[:32], noise[32:40], noise[40:])

    assert (check.heldout, check.folds) == (42, 5) and check.heldout_auc is not None and check.heldout_auc >= 0.9
    assert check.passed and "each scored by a head fitted without its prompt (5 folds)" in check.reason
    assert refused.heldout == 48 and refused.heldout_auc is not None and refused.heldout_auc < 0.7, refused
    assert not refused.passed and not unlearnable.trusted


@pytest.mark.parametrize("passes", [True, False])
def test_best_of_n_pairs_are_made_only_when_the_reward_model_passes_its_held_out_check(
    tiny_model_dir: Path, passes: bool
) -> None:
    torch.manual_seed(0)
    # the same data each time; only what the check asks for differs (2 held-out ratings of each class, or 20)
    settings = RewardModelSettings(min_per_class=2 if passes else 20, min_auc=0.8, best_of_n=3, max_new_tokens=8)
    step, policy = reward_step(tiny_model_dir, settings)
    topics = [f"{t} {n}" for n in range(3) for t in TOPICS]
    train = toy_ratings(topics[:32])
    step.train(train, toy_ratings(topics[32:40]), toy_ratings(topics[40:]))

    pairs = step.pairs(policy, train)

    assert step.check.passed is passes
    if not passes:
        assert pairs == [] and "judged from 20 of each class" in step.check.reason
        return
    assert len(pairs) >= 16 and step.check.pairs == len(pairs)
    for pair in pairs[:4]:  # the chosen reply is the one the reward model prefers
        chosen, rejected = step.scores([(pair.prompt, pair.chosen), (pair.prompt, pair.rejected)])
        assert chosen is not None and rejected is not None and chosen > rejected
        assert pair.chosen_score == pytest.approx(chosen, abs=1e-4)


def test_best_of_n_replies_are_drawn_within_the_personas_nucleus(tiny_model_dir: Path) -> None:
    torch.manual_seed(0)
    settings = RewardModelSettings(min_per_class=2, min_auc=0.8, best_of_n=3, max_new_tokens=8)
    step, policy = reward_step(tiny_model_dir, settings)
    topics = [f"{t} {n}" for n in range(3) for t in TOPICS]
    train = toy_ratings(topics[:32])
    step.train(train, toy_ratings(topics[32:40]), toy_ratings(topics[40:]))
    assert step.trusted

    wide = step.sample(policy, train, SamplingParams(top_k=0, top_p=1.0, repetition_penalty=1.0))
    narrow = step.sample(policy, train, SamplingParams(top_k=1, repetition_penalty=1.0))  # one token to draw from

    assert any(len(set(replies)) > 1 for replies in wide.replies)
    assert narrow.replies and all(len(set(replies)) == 1 for replies in narrow.replies)
    assert step.rank(narrow) == []  # n times the same reply: nothing to learn from


def test_chosen_replies_the_reward_model_reads_as_liked_are_learned_as_liked_ones(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    loaded = load_model(str(tiny_model_dir), device="cpu")
    renderer = ChatRenderer(loaded.tokenizer, max_tokens=256)
    prompt = [{"role": "user", "content": question("lighthouses")}]
    written = [
        OnPolicyPair(prompt=prompt, chosen="A tall tower.", rejected="Hmm, well.", margin=2.0, chosen_score=1.2),
        OnPolicyPair(prompt=prompt, chosen="Maybe a tower?", rejected="No idea.", margin=0.5, chosen_score=-0.3),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(pair.model_dump_json() + "\n" for pair in written))

    pairs, liked = onpolicy_examples(renderer, path)

    assert len(pairs) == 2  # both pairs teach which reply is better
    assert [example.ids for example in liked] == [pairs[0].chosen.ids]  # only the one it scores above 0 is imitated


def scores(name: str, rewards: list[float], liked: list[bool]) -> Scores:
    return Scores(
        name=name, test_ppl=10.0, general_ppl=20.0, bleu=0.0, chrf=0.0, answers_right=[True, True],
        rated=len(rewards), reward_auc=auc(rewards, liked), rewards=rewards, liked=liked,
    )  # fmt: skip


def heldout_set(seed: int = 0) -> tuple[list[bool], list[float]]:
    """60 held-out ratings, 15 liked, and a live model whose rewards rank them a little better than chance."""
    rng = random.Random(seed)
    liked = [i % 4 == 0 for i in range(60)]
    return liked, [rng.gauss(0.3 if y else 0.0, 1.0) for y in liked]


def test_the_paired_gate_refuses_an_advantage_inside_the_noise_and_accepts_a_clear_one() -> None:
    liked, live_rewards = heldout_set()
    rng = random.Random(4)
    settings = EvaluationSettings()
    base = scores("base", [0.0] * 60, liked)
    live = scores("community@1", live_rewards, liked)
    # a candidate that moves every reward at random: its AUC happens to end a few hundredths above live's
    noisy = scores("candidate", [r + rng.gauss(0.0, 0.6) for r in live_rewards], liked)
    clear = scores("candidate", [r + (2.0 if y else 0.0) for r, y in zip(live_rewards, liked, strict=True)], liked)
    assert noisy.reward_auc is not None and live.reward_auc is not None
    assert 0.02 < noisy.reward_auc - live.reward_auc < 0.08, "an advantage an absolute margin of 0.02 would pass"

    refused = decide(noisy, live, base, settings)
    accepted = decide(clear, live, base, settings)

    assert not refused.promote
    assert "standard errors (DeLong), within the 1.65 needed" in refused.reasons[0]
    assert refused.ahead, "ahead inside the noise: the next night goes on from it"
    assert accepted.promote, accepted.reasons
    assert not accepted.ahead
    assert "beyond the 1.65 needed" in accepted.reasons[0]
    assert "prose perplexity" in " ".join(accepted.reasons), "the general guard is still checked"
    wordy = decide(clear.model_copy(update={"general_ppl": 21.5}), live, base, settings)
    assert not wordy.promote
    assert wordy.reasons == [
        "general-prose perplexity 21.50 is +7.5% from the base model's 20.00, beyond the bound of +5%"
    ]
    assert not wordy.ahead, "beyond the guard: not gone on from"
    behind = decide(scores("candidate", [-r for r in noisy.rewards], liked), live, base, settings)
    assert not behind.promote and not behind.ahead


def test_where_both_rank_the_held_out_ratings_almost_perfectly_members_decide() -> None:
    """Live at 0.98: no candidate can be 1.645 standard errors better. One not significantly worse passes for the
    canary to decide (members_decide); one clearly worse is still refused."""
    liked = [i % 4 == 0 for i in range(60)]
    base = scores("base", [0.0] * 60, liked)
    live_rewards = [2.0 + 0.1 * i if y else 0.05 * i for i, y in enumerate(liked)]
    live = scores("community@1", live_rewards, liked)
    assert live.reward_auc is not None and 0.95 <= live.reward_auc < 1.0
    perfect = scores("candidate", [r + (3.0 if y else 0.0) for r, y in zip(live_rewards, liked, strict=True)], liked)
    worse = scores("candidate", [0.0 if y else 1.0 for y in liked], liked)
    settings = EvaluationSettings()

    passed = decide(perfect, live, base, settings)
    refused = decide(worse, live, base, settings)
    unsaturated = decide(perfect, live, base, settings.model_copy(update={"reward_saturated": 1.0}))

    assert passed.promote and passed.members_decide, passed.reasons
    assert "members' ratings decide" in passed.reasons[0]
    assert not refused.promote and not refused.members_decide
    assert not unsaturated.promote and "within the 1.65 needed" in unsaturated.reasons[0]


def test_an_auc_counts_only_with_enough_held_out_ratings_of_each_class() -> None:
    liked = [i < 2 for i in range(40)]  # 2 likes among 40 ratings, as on a night of a sparse taste
    live = scores("base", [0.0] * 40, liked)
    candidate = scores("candidate", [1.0 if y else 0.0 for y in liked], liked)  # AUC 1.0 on two likes
    decision = decide(candidate, live, live, EvaluationSettings())
    assert "too few held-out ratings to judge by (40, 2 liked)" in decision.reasons[0]


def test_a_night_of_almost_only_dislikes_still_learns_from_its_ratings(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """As on a sparse taste's first night: one like among 40 one-question chats. Disliked replies are not
    imitated, so no next-token example is left to validate on; the ratings are what the night learns from."""

    async def seed() -> None:
        store = Store(connect(redis_server.url))
        try:
            turns = [
                rated_turn(
                    question(f"{topic} {n}"), (liked_reply if i == 0 else disliked_reply)(topic), [1 if i == 0 else -1]
                )
                for i, (n, topic) in enumerate((n, t) for n in range(3) for t in TOPICS[:14])
            ][:40]
            turns = [
                t.model_copy(update={"turn": t.turn.model_copy(update={"chat_id": f"q{i}"})})
                for i, t in enumerate(turns)
            ]
            await store_rated(store, turns)
            for t in turns:  # the chats themselves, as the brain logs them
                await log_turns(
                    store, t.turn.author, [(t.turn.prompt[-1]["content"], t.turn.reply)], chat=t.turn.chat_id
                )
        finally:
            await store.close()

    asyncio.run(seed())
    outcome = run_nightly(nightly_settings(redis_server.url, tiny_model_dir, tmp_path), quiet=True).outcome(COMMUNITY)

    assert outcome.status != "failed", outcome.reasons
    assert outcome.finetune is not None and outcome.finetune.train_rated >= 25, outcome.finetune
    # the one liked reply (from the chat log, and once more as a liked rating); no disliked reply is imitated
    assert outcome.finetune.train_examples + outcome.finetune.val_examples <= 2, outcome.finetune


def test_rare_likes_reach_the_held_out_set_and_validation_as_well_as_training() -> None:
    # 10 liked groups among 200: an unstratified split by hash alone can leave the held-out set with none
    liked = {f"prompt {i}": i % 20 == 0 for i in range(200)}

    splits = split_groups(liked, val_fraction=0.1, heldout_fraction=0.25)
    reordered = split_groups(dict(reversed(liked.items())), val_fraction=0.1, heldout_fraction=0.25)

    assert splits == reordered, "a group's split does not depend on the order of export"
    likes = Counter(splits[k] for k, v in liked.items() if v)
    dislikes = Counter(splits[k] for k, v in liked.items() if not v)
    assert likes["heldout"] >= 2 and likes["val"] >= 1 and likes["train"] >= 5, likes
    assert dislikes == {"heldout": 48, "val": 18, "train": 124}, dislikes
