"""Which step a run keeps when no trained step scores better than the start. A night starts from what serves
now and the gate compares its candidate with that: a night that kept its start offered the gate the live
adapter itself and trained nothing. `trainer finetune` on its own hands back the start instead."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from trainer.core.distributed import Placement
from trainer.core.examples import Example, PairExample, RatedExample
from trainer.core.finetuning import PreferenceData
from trainer.core.loop import LoopHooks, LoopResult, LoopSettings, LoopState, Training, train
from trainer.core.objectives import Loss
from trainer.settings import PreferenceSettings


@dataclass
class One:
    x: torch.Tensor
    tokens: int = 1

    def to(self, device: torch.device) -> One:
        return self


class Steps:
    """One micro-batch per step: nothing to remember."""

    def for_step(self, step: int) -> list[Any]:
        return [One(torch.ones(1, 1))]

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass


class PullUp:
    """Moves the weight up every step."""

    def count(self, batch: Any) -> int:
        return 1

    def __call__(self, model: torch.nn.Module, batch: Any) -> Loss:
        return Loss(total=-model(batch.x).sum(), count=1)


def run(scores: list[float], keep_start: bool) -> tuple[int, list[float]]:
    """Train 4 steps with an evaluation after each, the validation scores given (the start's first); the step
    kept and the weight saved when it was kept."""
    settings = LoopSettings(label="t", total_steps=4, eval_every=1, keep_start=keep_start, progress=False)
    result, saved = run_settings(scores, settings)
    return result.best_step, saved


def run_settings(scores: list[float], settings: LoopSettings) -> tuple[LoopResult, list[float]]:
    """Train a one-weight model that moves up by 1 a step, the validation scores given (the start's first); the
    result and the weight saved each time a step was kept."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    given = iter(scores)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    training = Training(
        model=model,
        forward=model,
        objective=PullUp(),
        batches=Steps(),
        validate=lambda: next(given),
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
    )
    saved: list[float] = []

    def keep(state: LoopState) -> None:
        saved.append(model.weight.item())

    result = train(training, settings, Placement(torch.device("cpu")), LoopHooks(keep_best=keep))
    return result, saved


def test_a_night_keeps_its_best_trained_step_even_where_the_validation_split_preferred_the_start() -> None:
    best, saved = run([0.2, 0.5, 0.4, 0.45, 0.6], keep_start=False)
    assert best == 2
    assert saved[-1] == pytest.approx(2.0)  # the weights after two steps, not the start's 0.0


def test_a_fine_tune_on_its_own_hands_back_the_start_when_no_step_beats_it() -> None:
    best, saved = run([0.2, 0.5, 0.4, 0.45, 0.6], keep_start=True)
    assert (best, saved) == (0, [0.0])


def test_the_start_is_still_saved_until_a_trained_step_is_kept() -> None:
    best, saved = run([0.2, float("nan"), float("nan"), float("nan"), float("nan")], keep_start=False)
    assert (best, saved) == (0, [0.0])


def test_a_later_step_within_the_validations_noise_of_the_best_is_kept() -> None:
    """Twenty-odd validation ratings cannot tell steps 0.05 apart: the later step, which learned more, is kept;
    one clearly worse is not, and the kept step's own score is what the run reports."""
    scores = [0.5, 0.30, 0.34, 0.60, 0.33]
    settings = LoopSettings(label="t", total_steps=4, eval_every=1, keep_start=False, progress=False)
    assert run_settings(scores, settings)[0].best_step == 1
    result, saved = run_settings(scores, settings.model_copy(update={"keep_later_within": 0.05}))
    assert (result.best_step, result.best_val_loss) == (4, 0.33)
    assert saved == pytest.approx([0.0, 1.0, 2.0, 4.0])  # step 3 (0.60) was not kept


def test_the_noise_a_later_step_is_kept_within_is_one_standard_error_of_the_validation_score() -> None:
    def one(n: int) -> Example:
        return Example(ids=[1, 2, n], labels=[-100, 2, n])

    liked = [RatedExample(reply=one(k), desirable=k < 5, mismatched=one(99)) for k in range(25)]
    by_auc = PreferenceData(PreferenceSettings(), val_rated=liked)
    assert by_auc.selection_noise() == pytest.approx(math.sqrt(26 / (12 * 5 * 20)))  # 0.147
    pairs = [PairExample(one(2 * k), one(2 * k + 1)) for k in range(16)]
    by_pairs = PreferenceData(PreferenceSettings(select_later_within_se=2.0), val_pairs=pairs)
    assert by_pairs.selection_noise() == pytest.approx(2 * 0.5 / 4)
    assert PreferenceData(PreferenceSettings(select_by="loss"), val_rated=liked).selection_noise() == 0.0
