"""Rows with the same sampling settings are processed together, and each samples from the distribution its own
transformers logits processors would give it."""

from __future__ import annotations

import pytest
import torch

from brain.engine.sampling import Dry, alike_scores, make_sampler, pick_tokens

CPU = torch.device("cpu")
VOCAB = 500


def distribution(candidates: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
    """The candidates' probabilities spread over the whole vocabulary."""
    probs = torch.softmax(candidates, dim=-1)
    return probs if ids is None else torch.zeros(probs.shape[0], VOCAB).scatter(1, ids, probs)


@pytest.mark.parametrize(
    "key",
    [(0.3, 50, 0.9, 1.05), (1.0, 0, 0.8, 1.0), (0.7, 20, 1.0, 1.3), (1.0, 0, 1.0, 1.2), (0.0, 0, 1.0, 1.05)],
)
def test_rows_alike_sample_from_what_their_own_processors_give(key: tuple[float, int, float, float]) -> None:
    temperature, top_k, top_p, penalty = key
    torch.manual_seed(0)
    logits = torch.randn(6, VOCAB) * 3
    histories = [torch.randint(0, VOCAB, (n,)).tolist() for n in (1, 7, 40, 40, 3, 120)]
    candidates, ids, usable = alike_scores(logits, key, histories)
    assert usable.all()
    for row, history in enumerate(histories):
        sampler = make_sampler(
            temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=penalty, seed=1, device=CPU
        )
        assert sampler.batch_key == key and sampler.processors is not None
        own = sampler.processors(torch.tensor([history]), logits[row : row + 1].clone())  # type: ignore[arg-type]
        if temperature == 0.0:
            assert candidates[row].argmax() == own.argmax()
        else:
            expected = torch.softmax(own, dim=-1)[0]
            assert torch.allclose(distribution(candidates, ids)[row], expected, atol=1e-6)


def test_seeded_rows_alike_pick_the_same_tokens_alone_or_together() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, VOCAB)
    histories = [[1, 2, 3]] * 4

    def samplers() -> list:
        return [
            make_sampler(temperature=0.8, top_p=0.9, top_k=40, repetition_penalty=1.1, seed=s, device=CPU)
            for s in range(4)
        ]

    together = [pick_tokens(logits, samplers(), histories) for _ in range(2)]
    alone = [pick_tokens(logits[row : row + 1], [samplers()[row]], histories[:1])[0] for row in range(4)]
    assert together[0] == together[1] == alone


def test_a_broken_row_among_alike_ones_fails_alone() -> None:
    logits = torch.randn(3, VOCAB)
    logits[1, 7] = float("inf")
    samplers = [
        make_sampler(temperature=0.5, top_p=0.9, top_k=10, repetition_penalty=1.0, seed=s, device=CPU) for s in range(3)
    ]
    picks = pick_tokens(logits, samplers, [[1]] * 3)
    assert isinstance(picks[0], int) and isinstance(picks[2], int)
    assert not isinstance(picks[1], int)


def test_rows_with_dry_are_processed_with_the_others_and_keep_their_own_penalties() -> None:
    """The persona's rows have DRY on: each row's repeats cost it alone, and the batch samples what its own
    processors (DryLogitsProcessor among them) give."""
    torch.manual_seed(2)
    logits = torch.randn(3, VOCAB)
    logits[:, [8, 11]] = 4.0  # the tokens that would extend row 0's and row 1's repeats are among the best
    dry = Dry(multiplier=0.8, base=1.75, allowed_length=2, breaker_ids=frozenset({0}))
    histories = [[5, 6, 7, 8, 5, 6, 7], [9, 10, 11, 9, 10], [1, 2, 3, 4]]  # rows 0 and 1 repeat themselves
    key = (0.7, 40, 0.9, 1.05)
    dries = [dry, dry, None]
    candidates, ids, _ = alike_scores(logits, key, histories, dries)
    got = distribution(candidates, ids)
    for row, history in enumerate(histories):
        sampler = make_sampler(
            temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.05, seed=0, device=CPU, dry=dries[row]
        )
        assert sampler.batch_key == key and (sampler.dry is not None) == (row < 2)
        assert sampler.processors is not None
        own = sampler.processors(torch.tensor([history]), logits[row : row + 1].clone())  # type: ignore[arg-type]
        assert torch.allclose(got[row], torch.softmax(own, dim=-1)[0], atol=1e-6)
    plain, plain_ids, _ = alike_scores(logits, key, histories)
    assert not torch.allclose(distribution(plain, plain_ids)[0], got[0])  # DRY moved row 0's choice
    assert torch.allclose(distribution(plain, plain_ids)[2], got[2])
