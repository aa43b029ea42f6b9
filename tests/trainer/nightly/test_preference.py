"""Learning from ratings: retry pairs become DPO pairs and lone ratings KTO examples, and either objective
moves a tiny model's implied reward -- liked replies up relative to disliked ones, on questions it never saw."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.trainer.nightly.ratings_helpers import TOPICS, lone_ratings, retry_pairs
from trainer.core.distributed import Placement
from trainer.core.evaluation import fill_reference, reply_logprobs
from trainer.core.examples import ChatRenderer, Example
from trainer.core.finetuning import FinetuneData, PreferenceData, fine_tune
from trainer.core.models import add_lora, load_model
from trainer.nightly.ratings import heldout_replies, preference_examples
from trainer.nightly.stats import auc, pair_accuracy
from trainer.settings import FinetuneSettings, PreferenceSettings

SETTINGS = FinetuneSettings(
    max_steps=30, epochs=100, learning_rate=2e-2, warmup_steps=2, eval_every=10, patience=10, batch_size=8, r=8
)


def mean_gap(rewards: list[float], liked: list[bool]) -> float:
    """The mean implied reward of liked replies less that of disliked ones."""
    good = [r for r, y in zip(rewards, liked, strict=True) if y]
    bad = [r for r, y in zip(rewards, liked, strict=True) if not y]
    return sum(good) / len(good) - sum(bad) / len(bad)


def implied_rewards(model, loaded, examples: list[Example], reference: list[float], beta: float) -> list[float]:
    logps = reply_logprobs(
        model, examples, batch_size=8, max_batch_tokens=4096, pad_id=loaded.tokenizer.pad_token_id, device=loaded.device
    )
    return [beta * (policy - ref) for policy, ref in zip(logps, reference, strict=True)]


def test_retries_rated_apart_become_pairs_and_lone_ratings_kto_examples(tiny_model_dir: Path) -> None:
    renderer = ChatRenderer(load_model(str(tiny_model_dir)).tokenizer, max_tokens=256)
    turns = retry_pairs(TOPICS[:3]) + lone_ratings(TOPICS[3:7])

    examples = preference_examples(renderer, turns, max_pairs=6)

    assert len(examples.pairs) == 3 and len(examples.rated) == 4
    assert len(examples.liked) == 3 + 2
    assert sum(r.desirable for r in examples.rated) == 2
    for pair in examples.pairs:  # the liked reply is the chosen one; both answer the same prompt
        reply = [t for t, y in zip(pair.chosen.ids, pair.chosen.labels, strict=True) if y != -100]
        chosen = renderer.tokenizer.decode(reply)
        assert "Thanks for asking" in chosen
        prompt_length = pair.chosen.labels.index(next(y for y in pair.chosen.labels if y != -100))
        assert pair.chosen.ids[:prompt_length] == pair.rejected.ids[:prompt_length]


@pytest.mark.parametrize("kind", ["dpo", "kto"])
def test_the_preference_objective_moves_liked_replies_above_disliked_ones(tiny_model_dir: Path, kind: str) -> None:
    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir), device="cpu")
    renderer = ChatRenderer(loaded.tokenizer, max_tokens=256)
    make = retry_pairs if kind == "dpo" else lone_ratings
    train = preference_examples(renderer, make(TOPICS[:12]), max_pairs=6)
    unseen = heldout_replies(renderer, retry_pairs(TOPICS[12:]))
    beta = 0.1
    settings = PreferenceSettings(beta=beta, next_token_weight=0.0)  # the preference objective alone
    data = PreferenceData(settings, train.pairs, train.rated, val_pairs=train.pairs[:4], val_rated=train.rated[:4])
    sizes = {"batch_size": 8, "max_batch_tokens": 4096, "pad_id": 0, "device": loaded.device}
    fill_reference(loaded.model, data.pairs, data.rated, **sizes)
    assert (len(data.pairs), len(data.rated)) == ((12, 0) if kind == "dpo" else (0, 12))
    reference = reply_logprobs(loaded.model, unseen.replies, **sizes)

    model = add_lora(loaded.model, SETTINGS)
    pad = loaded.tokenizer.pad_token_id
    before = implied_rewards(model, loaded, unseen.replies, reference, beta)
    result = fine_tune(
        model, FinetuneData(train.liked, train.liked[:2], pad, data), SETTINGS, Placement(torch.device("cpu")),
        label=kind, progress=False,
    )  # fmt: skip
    after = implied_rewards(model, loaded, unseen.replies, reference, beta)

    liked = unseen.liked
    assert max(abs(r) for r in before) < 1e-4, "a fresh adapter starts as the reference: no reward either way"
    assert result.steps == 30 and result.history["train"][-1][1] < result.history["train"][0][1]
    assert auc(after, liked) == 1.0, after
    assert len(unseen.pairs) == len(TOPICS[12:]) and pair_accuracy(after, unseen.pairs) == 1.0
    assert mean_gap(after, liked) > 1.0, f"liked replies' implied reward only {mean_gap(after, liked):.2f} above"


def test_the_live_adapter_serves_as_reference_and_comes_off_again(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from trainer.nightly.lora import reference

    loaded = load_model(str(tiny_model_dir), device="cpu")
    renderer = ChatRenderer(loaded.tokenizer, max_tokens=256)
    replies = heldout_replies(renderer, lone_ratings(TOPICS[:4])).replies
    sizes = {"batch_size": 8, "max_batch_tokens": 4096, "pad_id": 0, "device": loaded.device}
    base = reply_logprobs(loaded.model, replies, **sizes)
    torch.manual_seed(1)
    live = get_peft_model(load_model(str(tiny_model_dir)).model, LoraConfig(r=4, init_lora_weights=False))
    live.save_pretrained(tmp_path / "live")

    with reference(loaded, str(tmp_path / "live")) as model:
        as_live = reply_logprobs(model, replies, **sizes)

    assert all(abs(a - b) > 1e-3 for a, b in zip(as_live, base, strict=True)), "the live adapter scored them"
    assert not any("lora" in name for name, _ in loaded.model.named_modules()), "and it came off again"
    assert reply_logprobs(loaded.model, replies, **sizes) == base
