"""The gate judges a candidate as members do -- by how its implied reward ranks the liked replies of held-out
ratings above the disliked ones -- and refuses one that wins on ratings but forgets what the base model knew."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import yaml

from brain import personas
from brain.adapters import COMMUNITY
from brain.settings import Settings
from brain.store import Store
from brain.store.client import connect
from tests.trainer.nightly.helpers import nightly_settings, seed_community
from tests.trainer.nightly.ratings_helpers import TOPICS, retry_pairs, store_rated
from trainer.core.evaluation import greedy_replies
from trainer.core.examples import ChatRenderer
from trainer.nightly.guard import guard_set, load_questions
from trainer.nightly.run import cpu_bf16, run_nightly
from trainer.nightly.scoring import Evaluator

QUESTION_TOKENS = 6


def questions_the_base_answers(model_dir: Path, path: Path) -> Path:
    """The shipped questions, each with the first word of the tiny base model's greedy reply as its answer:
    a question set the base model answers right, as the default one is for the default model."""
    evaluator = Evaluator(str(model_dir), cpu_bf16=cpu_bf16(Settings()))  # as the nightly runs it
    system = personas.load_presets(None)[Settings().brain.default_persona].system_prompt
    guard = guard_set(ChatRenderer(evaluator.tokenizer), system)
    replies = greedy_replies(
        evaluator.base, evaluator.tokenizer, guard.prompts, batch_size=evaluator.batch_size,
        max_new_tokens=QUESTION_TOKENS, eos_token_ids=evaluator.eos, pad_id=evaluator.pad, device=evaluator.device,
    )  # fmt: skip
    answered = []
    for question, reply in zip(guard.questions, replies, strict=True):
        word = re.search(r"(?<!\w)[A-Za-z]{3,}(?!\w)", reply)  # a whole word, as the guard matches answers
        if word:
            answered.append({"question": question.question, "answers": [word.group(0)]})
    assert len(answered) >= 5, replies
    path.write_text(yaml.safe_dump(answered))
    return path


async def seed(redis_url: str) -> None:
    """The community's logs, and its taste: of two replies to a question, the friendly one is liked."""
    await seed_community(redis_url)
    topics = [f"{topic} {n}" for topic in TOPICS for n in range(3)]
    store = Store(connect(redis_url))
    try:
        await store_rated(store, retry_pairs(topics))
    finally:
        await store.close()


def seeded_with_a_strict_guard(redis_url: str, model_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """The community's logs and taste seeded; the gate's evaluation settings with questions the tiny base model
    answers right, none of which a candidate may lose."""
    asyncio.run(seed(redis_url))
    questions = questions_the_base_answers(model_dir, tmp_path / "questions.yaml")
    return {"questions_file": str(questions), "questions_may_lose": 0, "question_max_new_tokens": QUESTION_TOKENS}


def test_a_candidate_that_wins_on_ratings_but_fails_the_guard_is_refused(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    evaluation = seeded_with_a_strict_guard(redis_server.url, tiny_model_dir, tmp_path)
    questions = Path(evaluation["questions_file"])
    # the gate's refusal is what this test is about: the fine-tune keeps its best step, guard or not (with the
    # guard, it would keep one that holds it: test_step_guards.py)
    unguarded = {"keep_within_guard": False}
    # judged by the ratings alone (the reward model's judgment of the replies: test_replies_judged.py)
    by_ratings = {"reward_model": {"judge_samples": 0}}
    strict = nightly_settings(
        redis_server.url, tiny_model_dir, tmp_path, evaluation=evaluation, finetune=unguarded, preference=by_ratings
    )

    refused = run_nightly(strict, quiet=True).outcome(COMMUNITY)

    assert refused.status == "kept" and refused.version is None
    scores = refused.scores
    assert scores.candidate.rated >= 8, "enough held-out ratings to judge by"
    assert scores.live.reward_auc == 0.5, "the base model's implied rewards are all 0: no ranking"
    assert scores.candidate.reward_auc >= 0.9, "the candidate learned the community's taste"
    reward = refused.reward_model
    assert reward is not None and reward.passed, reward
    assert reward.pairs > 0 and refused.finetune.train_pairs > reward.pairs, "best-of-n pairs beside the retry pairs"
    assert sum(scores.base.answers_right) == len(load_questions(questions)), "the base answers every question"
    assert len(refused.reasons) == 1 and "general questions: keeps" in refused.reasons[0]
    assert "loses question" in refused.reasons[0]

    # the same candidate, allowed to forget: it goes live on the strength of the ratings
    loose = nightly_settings(
        redis_server.url, tiny_model_dir, tmp_path, evaluation={**evaluation, "questions_may_lose": 100},
        finetune=unguarded, preference=by_ratings,
    )  # fmt: skip
    promoted = run_nightly(loose, quiet=True).outcome(COMMUNITY)
    assert promoted.status == "promoted", promoted.reasons
    # the held-out /retry pairs judge it: replies to one prompt, the liked one first by its implied reward
    assert "held-out pairs of a liked and a disliked reply to one prompt" in promoted.reasons[0]
    assert re.search(r"first in (9\d|100)\.\d% against base's 50\.0%", promoted.reasons[0]), promoted.reasons[0]
    assert "(clustered by prompt), beyond the 1.65 needed" in promoted.reasons[0]


def test_a_night_whose_every_step_breaks_the_guard_offers_no_candidate(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    # every trained step loses answers the base model had right: the fine-tune keeps the least beyond, which no
    # gate could pass
    evaluation = seeded_with_a_strict_guard(redis_server.url, tiny_model_dir, tmp_path)
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, evaluation=evaluation)

    outcome = run_nightly(settings, quiet=True).outcome(COMMUNITY)

    assert outcome.status == "kept" and outcome.version is None
    assert outcome.finetune.beyond_guard and outcome.finetune.val_pair_accuracy is None, outcome.finetune
    assert "every step of the night went beyond the general guard" in outcome.reasons[0], outcome.reasons
    assert outcome.scores is None and "gate" not in outcome.seconds, "the gate's time is spared"
