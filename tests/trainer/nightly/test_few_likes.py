"""Learning when likes are rare: KTO's class weights follow each night's counts, a reward model learns what
liked and disliked replies share, its best-of-n pairs are used only when it ranks held-out ratings well, and
the gate promotes only on a paired difference beyond the noise of the held-out ratings."""

from __future__ import annotations

import pytest

from brain.settings import PreferenceSettings
from trainer.core.examples import Example, RatedExample
from trainer.core.finetuning import PreferenceData
from trainer.core.objectives import kto_class_weights


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
