"""A night's fine-tune never keeps a step beyond the general guard: not one whose perplexity on the guard's prose is
beyond its bound, nor one that lost an answer the base model had right. It keeps the best step that still holds
the guard, so a taste learned hard cannot cost the candidate the gate."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.core import distributed
from trainer.core.examples import ChatRenderer, Example, text_windows
from trainer.core.finetuning import (
    BEYOND_GUARD,
    Batching,
    FinetuneData,
    ProseBound,
    StepGuard,
    fine_tune,
    prose_loss,
    within_guards,
)
from trainer.core.loop import LoopHooks
from trainer.core.models import ModelWithTokenizer, add_lora, load_model
from trainer.nightly.guard import Answering, GuardSet, Question, QuestionsKept
from trainer.settings import FinetuneSettings

PROSE = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 12


# the start may be kept, as by `trainer finetune`: where every trained step is beyond the guard, the start is the
# step within it (a night does not keep its start: tests/trainer/test_kept_step.py)
SETTINGS = FinetuneSettings(
    learning_rate=2e-2,
    max_steps=24,
    eval_every=4,
    patience=10,
    batch_size=8,
    warmup_steps=1,
    epochs=100,
    keep_start=True,
)


def meows(renderer: ChatRenderer) -> list[Example]:
    """One reply to many questions, to learn hard."""
    return [
        renderer.completion(*parts)
        for i in range(40)
        if (parts := renderer.completion_parts([{"role": "user", "content": f"what does pet {i} say?"}], "MEOW MEOW."))
    ]


def fine_tune_hard(
    loaded: ModelWithTokenizer,
    model: torch.nn.Module,
    guards: list[StepGuard],
    measure: Callable[[torch.nn.Module], None],
) -> int:
    """Fine-tune on the meows within ``guards``; ``measure(model)`` is called on every step kept as the best.
    The step kept."""
    examples = meows(ChatRenderer(loaded.tokenizer, max_tokens=128))
    data = FinetuneData(examples[:36], examples[36:], loaded.tokenizer.pad_token_id, guards=guards)
    hooks = LoopHooks(keep_best=lambda state: measure(model))
    placement = distributed.start("cpu")
    return fine_tune(model, data, SETTINGS, placement, label="t", progress=False, hooks=hooks).best_step


def kept_prose_ratio(tiny_model_dir: Path, bound: float | None) -> tuple[float, int]:
    """Fine-tune the tiny model hard on one reply; the prose perplexity (as a ratio to the base model's) of the
    step it keeps, and that step."""
    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir), device="cpu")
    model = add_lora(loaded.model, SETTINGS)
    batching = Batching(SETTINGS, 1, loaded.tokenizer.pad_token_id, distributed.start("cpu"))
    windows = text_windows(loaded.tokenizer(PROSE, add_special_tokens=False)["input_ids"], 64)
    with model.disable_adapter():
        base = prose_loss(model, windows, batching)
    guards: list[StepGuard] = [ProseBound(windows, base, bound)] if bound is not None else []
    kept: list[float] = []
    step = fine_tune_hard(
        loaded, model, guards, lambda m: kept.append(math.exp(prose_loss(m, windows, batching) - base))
    )
    return kept[-1], step


def kept_answer(tiny_model_dir: Path, guarded: bool) -> tuple[bool, bool, int]:
    """Fine-tune the tiny model hard on one reply, with or without a question its base model answers right (its
    own greedy reply is the right answer) as a step guard: whether the base model answers it right, whether the
    step kept does, and that step."""
    torch.manual_seed(0)
    loaded = load_model(str(tiny_model_dir), device="cpu")
    model = add_lora(loaded.model, SETTINGS)
    renderer = ChatRenderer(loaded.tokenizer, max_tokens=128)
    prompt = renderer.ids(renderer.text([{"role": "user", "content": "what is the capital of france?"}], prompt=True))
    eos = [loaded.tokenizer.eos_token_id]
    answering = Answering(loaded.tokenizer, eos, batch_size=4, max_new_tokens=8)
    with model.disable_adapter():
        base_reply = answering.replies(model, [prompt])[0]
    question = Question(question="what is the capital of france?", answers=[base_reply or "nothing"])
    guard = GuardSet(prose=[], questions=[question], prompts=[prompt])
    with model.disable_adapter():
        kept_by_base = QuestionsKept.of_base(model, guard, answering, may_lose=0)
    answers: list[bool] = []
    step = fine_tune_hard(
        loaded,
        model,
        [kept_by_base] if guarded else [],
        lambda m: answers.append(answering.right(m, [question], [prompt])[0]),
    )
    return bool(kept_by_base.questions), answers[-1], step


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


def test_the_step_kept_keeps_the_answers_the_base_model_had_right(tiny_model_dir: Path) -> None:
    base_right, unguarded_right, unguarded_step = kept_answer(tiny_model_dir, guarded=False)
    assert base_right and not unguarded_right and unguarded_step > 0  # trained hard, the answer is lost

    _, guarded_right, guarded_step = kept_answer(tiny_model_dir, guarded=True)
    assert guarded_right and guarded_step < unguarded_step


@dataclass
class Scripted:
    """A guard whose verdict on each evaluation is given, counting the evaluations it was asked about."""

    verdicts: list[float]
    asked: list[int] = field(default_factory=list)
    evaluation: int = 0

    def beyond(self, model: torch.nn.Module, batching: Batching) -> float:
        self.asked.append(self.evaluation)
        return self.verdicts[self.evaluation]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=12),
    st.booleans(),
    st.sampled_from([0.0, 0.3]),
)
def test_the_guards_are_asked_only_about_a_step_that_would_be_kept(
    evaluations: list[tuple[int, bool]], start_scored_first: bool, within: float
) -> None:
    """The step kept is the best one within the guard (the first of equals) or, with ``within`` (the validation's
    noise), the latest within the guard that scored at most ``within`` worse than every step within the guard
    before it, as if the guard had been asked about every step; it is asked only about a step that would be kept.
    A start that may not be kept (a night's) is neither asked about nor a score the steps after it must beat."""
    scores = [score / 5 for score, _ in evaluations]
    guard = Scripted([1.0 if beyond else 0.0 for _, beyond in evaluations])
    step = iter(range(len(evaluations)))

    def validate() -> float:
        guard.evaluation = next(step)
        return scores[guard.evaluation]

    batching = Batching(SETTINGS, 1, 0, distributed.start("cpu"))
    guarded = within_guards(validate, torch.nn.Linear(1, 1), [guard], batching, start_scored_first, within)
    returned = [guarded() for _ in evaluations]
    first = 1 if start_scored_first else 0
    candidates = range(first, len(evaluations))
    best, kept = math.inf, first
    for i in candidates:  # the loop's rule
        if returned[i] < best or (within and returned[i] <= best + within):
            kept, best = i, min(best, returned[i])

    held = [i for i in candidates if not evaluations[i][1]]
    if held:
        expected = [i for i in held if all(scores[i] < scores[j] or (within and scores[i] <= scores[j] + within)
                                           for j in held if j < i)]  # fmt: skip
        assert kept == expected[-1]
        assert within or kept == min(held, key=lambda i: (scores[i], i))
    else:
        assert returned[kept] >= BEYOND_GUARD
    best_before = [min(returned[first:i], default=math.inf) for i in candidates]
    asked = [i for i, b in zip(candidates, best_before, strict=True)
             if scores[i] < b or (within and scores[i] <= b + within)]  # fmt: skip
    assert guard.asked == asked
