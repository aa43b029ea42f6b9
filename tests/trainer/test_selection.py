"""Which step a fine-tune keeps when members' ratings choose it: the one whose implied reward ranks the validation
ratings best (AUC) and, among steps that rank them equally well, the one that separates liked from disliked the
most. A small validation set soon ranks every pair right, and the first step to do so was kept while the rest of
the night's steps were thrown away."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.core.finetuning import auc_step, preference_score
from trainer.nightly.stats import auc

LIKED = [True, True, False, False, False]


def test_of_two_steps_that_rank_every_pair_right_the_one_that_separates_further_is_kept() -> None:
    early = [0.2, 0.3, 0.1, 0.0, -0.1]  # every liked reply above every disliked one, barely
    later = [2.0, 2.5, -1.0, -1.5, -2.0]  # the same ranking, far apart
    assert auc(early, LIKED) == auc(later, LIKED) == 1.0
    assert preference_score(later, LIKED) > preference_score(early, LIKED)


def test_without_both_classes_the_score_is_a_coin() -> None:
    assert preference_score([1.0, 2.0], [True, True]) == 0.5


rewards = st.lists(st.floats(-50, 50, allow_nan=False), min_size=5, max_size=5)


@given(rewards, rewards)
def test_the_tie_break_never_outranks_a_better_auc(a: list[float], b: list[float]) -> None:
    auc_a, auc_b = auc(a, LIKED), auc(b, LIKED)
    assert auc_a is not None and auc_b is not None
    if auc_a > auc_b:
        assert preference_score(a, LIKED) > preference_score(b, LIKED)
    # and the AUC itself is recovered from the score: the tie-break is under half a step
    step = auc_step(2, 3)
    assert round(preference_score(a, LIKED) / step) * step == pytest.approx(auc_a)
