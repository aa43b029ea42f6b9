"""A night's fine-tune never keeps a step whose perplexity on the general guard's prose is beyond the guard's
bound: it keeps the best step that still holds it, so a taste learned hard cannot cost the candidate the gate."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from trainer.core import distributed
from trainer.core.examples import ChatRenderer, text_windows
from trainer.core.finetuning import Batching, FinetuneData, ProseBound, fine_tune, prose_loss
from trainer.core.loop import LoopHooks, LoopState
from trainer.core.models import add_lora, load_model
from trainer.settings import FinetuneSettings

PROSE = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 12


def kept_prose_ratio(tiny_model_dir: Path, bound: float | None) -> tuple[float, int]:
    """Fine-tune the tiny model hard on one reply; the prose perplexity (as a ratio to the base model's) of the
    step it keeps, and that step."""
    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir), device="cpu")
    renderer = ChatRenderer(loaded.tokenizer, max_tokens=128)
    examples = [
        renderer.completion(*parts)
        for i in range(40)
        if (parts := renderer.completion_parts([{"role": "user", "content": f"what does pet {i} say?"}], "MEOW MEOW."))
    ]
    settings = FinetuneSettings(
        learning_rate=2e-2, max_steps=24, eval_every=4, patience=10, batch_size=8, warmup_steps=1, epochs=100
    )
    placement = distributed.start("cpu")
    model = add_lora(loaded.model, settings)
    pad = loaded.tokenizer.pad_token_id
    batching = Batching(settings, 1, pad, placement)
    windows = text_windows(loaded.tokenizer(PROSE, add_special_tokens=False)["input_ids"], 64)
    with model.disable_adapter():
        base = prose_loss(model, windows, batching)
    data = FinetuneData(examples[:36], examples[36:], pad)
    if bound is not None:
        data.prose = ProseBound(windows, base, bound)
    kept: list[float] = []

    def keep_best(state: LoopState) -> None:
        kept.append(math.exp(prose_loss(model, windows, batching) - base))

    result = fine_tune(
        model, data, settings, placement, label="t", progress=False, hooks=LoopHooks(keep_best=keep_best)
    )
    return kept[-1], result.best_step


@pytest.mark.parametrize("bound", [0.02, 0.5])
def test_the_step_kept_is_the_best_one_within_the_prose_bound(tiny_model_dir: Path, bound: float) -> None:
    unbounded_ratio, unbounded_step = kept_prose_ratio(tiny_model_dir, None)
    ratio, step = kept_prose_ratio(tiny_model_dir, bound)

    assert unbounded_ratio > 1 + bound and unbounded_step > 0  # trained hard, the prose suffers
    assert ratio <= 1 + bound, (ratio, step)
    assert step < unbounded_step


def test_a_diverged_model_is_beyond_any_bound() -> None:
    bound = ProseBound([], base_loss=3.0, bound=100.0)
    assert bound.exceeded_by(float("nan")) == math.inf and bound.exceeded_by(3.0) == 0.0
