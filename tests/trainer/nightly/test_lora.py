"""The fine-tune's arithmetic: a batch split to fit the token budget yields the gradient of the whole batch, a
mixed step of next-token, DPO and KTO parts too."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from trainer.core.batches import ExampleBatches, chunks
from trainer.core.distributed import Placement
from trainer.core.examples import IGNORE_INDEX, Example, PairExample, RatedExample
from trainer.core.loop import backward
from trainer.core.mixture import MixedBatches, Mixture, Weighted
from trainer.core.objectives import KTO, ExampleObjective, NextToken, SigmoidDPO


def examples(count: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        ids = [rng.randrange(3, 500) for _ in range(rng.randrange(8, 60))]
        cut = rng.randrange(2, len(ids) - 2)
        out.append(Example(ids, [IGNORE_INDEX] * cut + ids[cut:]))
    return out


def gradients(model_dir: Path, batch: list[Example], max_batch_tokens: int) -> list[torch.Tensor]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(r=4, init_lora_weights=False))
    model.eval()  # no dropout: both runs see the same function
    source = ExampleBatches(
        batch, batch_size=len(batch), micro_batch_size=len(batch), max_batch_tokens=max_batch_tokens, seed=0, pad_id=0
    )
    backward(model, NextToken(), source.for_step(0), Placement(device=torch.device("cpu")))
    return [p.grad for p in model.parameters() if p.requires_grad]


def test_pieces_within_the_token_budget_give_the_whole_batchs_gradient(tiny_model_dir: Path) -> None:
    batch = examples(8)
    assert len(chunks(sorted(batch, key=lambda e: len(e.ids)), 8, 128)) > 2, "the budget splits the batch"
    whole, pieces = gradients(tiny_model_dir, batch, 10_000), gradients(tiny_model_dir, batch, 128)
    for a, b in zip(whole, pieces, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_chunks_stay_within_the_budget_and_keep_every_example() -> None:
    batch = sorted(examples(40, seed=1), key=lambda e: len(e.ids))
    groups = chunks(batch, max_examples=8, max_tokens=200)
    assert [e for g in groups for e in g] == batch
    assert all(len(g) <= 8 and max(len(e.ids) for e in g) * len(g) <= 200 for g in groups)


def preference_parts(seed: int = 2) -> list[tuple[ExampleObjective, float, list]]:
    rng = random.Random(seed)
    texts = examples(24, seed)
    pairs = [PairExample(texts[i], texts[i + 1], rng.uniform(-60, -20), rng.uniform(-60, -20)) for i in range(0, 8, 2)]
    rated = [
        RatedExample(texts[i], i % 4 == 0, texts[i + 1], rng.uniform(-60, -20), rng.uniform(-60, -20))
        for i in range(8, 20, 2)
    ]
    return [(NextToken(), 0.5, texts[20:]), (SigmoidDPO(0.5), 1.0, pairs), (KTO(0.5, 1.0, 1.5), 2.0, rated)]


def mixed_gradients(model_dir: Path, max_batch_tokens: int) -> tuple[float, int, list[torch.Tensor]]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(r=4, init_lora_weights=False))
    model.eval()
    sources = [
        Weighted(objective, weight, ExampleBatches(
            part, batch_size=len(part), micro_batch_size=len(part), max_batch_tokens=max_batch_tokens, seed=0,
            pad_id=0, collate=objective.collate,
        ))
        for objective, weight, part in preference_parts()
    ]  # fmt: skip
    micro_batches = MixedBatches(sources).for_step(0)
    loss, _ = backward(model, Mixture(), micro_batches, Placement(device=torch.device("cpu")))
    return loss, len(micro_batches), [p.grad for p in model.parameters() if p.requires_grad]


def test_a_mixed_steps_loss_is_the_weighted_sum_of_its_parts_means_however_it_is_split(tiny_model_dir: Path) -> None:
    whole_loss, one_each, whole = mixed_gradients(tiny_model_dir, 100_000)
    pieces_loss, many, pieces = mixed_gradients(tiny_model_dir, 160)
    assert one_each == 3 and many > 8, "each part in one micro-batch, then in several"
    assert abs(whole_loss - pieces_loss) < 1e-4
    scale = max(float(g.abs().max()) for g in whole)
    for a, b in zip(whole, pieces, strict=True):  # float32 sums in another order: a millionth of the largest
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * scale)


def whole_vocabulary_losses(model: torch.nn.Module, batch) -> tuple[float, list[float]]:
    """The next-token loss and each row's reply log-probability from the logits of every position."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, : batch.targets.size(1)]
    nll = torch.nn.functional.cross_entropy(
        logits.float().transpose(1, 2), batch.targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return float(nll.sum()), (-nll.sum(dim=1)).tolist()


def test_the_head_runs_only_where_a_reply_is_scored_and_the_losses_stay_the_same(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from trainer.core.batches import collate
    from trainer.core.objectives import sequence_logps, target_logits

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    batch = collate(examples(6, seed=3), pad_id=0)
    logits, targets, rows = target_logits(model, batch)
    scored = sum(t != IGNORE_INDEX for e in examples(6, seed=3) for t in e.labels)
    assert logits.shape[0] == targets.shape[0] == rows.shape[0] == scored, "the head reads the scored positions only"
    with torch.no_grad():
        whole_loss, whole_rows = whole_vocabulary_losses(model, batch)
        assert abs(float(NextToken()(model, batch).total) - whole_loss) < 1e-3
        torch.testing.assert_close(sequence_logps(model, batch), torch.tensor(whole_rows), rtol=1e-5, atol=1e-4)
        unscored = collate([Example(e.ids, [IGNORE_INDEX] * len(e.ids)) for e in examples(2)], pad_id=0)
        assert float(NextToken()(model, unscored).total) == 0.0, "a batch with nothing scored costs nothing"
