"""DRY sampling: llama.cpp's penalty, token for token, and rows of a batch that keep their own settings."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import LogitsProcessorList

from brain.engine.batching import GenerationRequest
from brain.engine.model_loading import LoadedModel
from brain.engine.sampling import Dry, DryLogitsProcessor, breaker_token_ids, dry_penalties
from tests.brain.engine.helpers import collect, random_prompts, reference_greedy, worker_paused

DRY = Dry(multiplier=0.8, base=1.75, allowed_length=2)


def published(multiplier: float, base: float, length: int, allowed_length: int) -> float:
    """llama.cpp's DRY penalty of a token that would extend a repeat of ``length`` tokens."""
    return multiplier * base ** (length - allowed_length)


def test_a_token_that_would_extend_a_repeat_loses_the_published_penalty() -> None:
    # "a b c d x a b c": emitting d again would repeat "a b c d"; the repeat so far is 3 tokens long
    a, b, c, d, x = 10, 11, 12, 13, 14
    assert dry_penalties([a, b, c, d, x, a, b, c], DRY) == {d: pytest.approx(published(0.8, 1.75, 3, 2))}
    # two earlier places: each follower gets the penalty of its own longest repeat
    history = [a, b, c, d, x, b, c, x, y := 15, a, b, c]
    assert dry_penalties(history, DRY) == {d: pytest.approx(published(0.8, 1.75, 3, 2)), x: pytest.approx(0.8)}
    assert y not in dry_penalties(history, DRY)
    # a repeat shorter than allowed_length costs nothing
    assert dry_penalties([a, b, x, d, b], DRY) == {}
    assert dry_penalties([a, b, c, d, x, a, b, c], Dry(multiplier=0.8, base=1.75, allowed_length=4)) == {}


def test_a_sequence_breaker_stops_the_match_and_is_never_penalised() -> None:
    a, b, c, d, newline = 10, 11, 12, 13, 99
    plain = dry_penalties([a, b, c, d, newline, a, b, c], DRY)
    assert plain == {d: pytest.approx(published(0.8, 1.75, 3, 2))}
    broken = Dry(multiplier=0.8, base=1.75, allowed_length=2, breaker_ids=frozenset({newline}))
    # the newest breaker sits just before "a b c" here, so the repeat is the same; inside the suffix it cuts it
    assert dry_penalties([a, b, c, d, newline, a, b, c], broken) == plain
    # "\n b c" repeats 3 tokens, but a repeat stops at the breaker: it counts as 2
    across = [newline, b, c, d, 14, newline, b, c]
    assert dry_penalties(across, DRY) == {d: pytest.approx(published(0.8, 1.75, 3, 2))}
    assert dry_penalties(across, broken) == {d: pytest.approx(published(0.8, 1.75, 2, 2))}
    # the breaker itself may follow a repeat without penalty
    assert dry_penalties([a, b, c, newline, a, b, c], broken) == {}


def test_the_window_and_the_off_switches() -> None:
    a, b, c, d, x = 10, 11, 12, 13, 14
    history = [a, b, c, d, x, 20, 21, 22, 23, a, b, c]
    assert d in dry_penalties(history, DRY)
    assert dry_penalties(history, Dry(multiplier=0.8, base=1.75, allowed_length=2, penalty_last_n=6)) == {}
    assert dry_penalties(history, Dry(multiplier=0.0)) == {}
    assert dry_penalties(history, Dry(multiplier=0.8, penalty_last_n=0)) == {}


def test_a_long_loop_is_penalised_with_the_exponent_bounded() -> None:
    loop = [7, 8, 9] * 200
    penalties = dry_penalties(loop, Dry(multiplier=0.8, base=1.75, allowed_length=2))
    assert set(penalties) == {7}
    assert penalties[7] == pytest.approx(0.8 * 1.75 ** int(88.7228391 / torch.tensor(1.75).log().item()))
    assert torch.isfinite(torch.tensor(penalties[7]))


def brute_force(history: list[int], dry: Dry) -> dict[int, float]:
    """The definition: token t would extend a repeat of k tokens where the history's last k tokens occurred
    before, followed by t, with no breaker among the last k; the longest such k counts."""
    window = history if dry.penalty_last_n < 0 else history[-dry.penalty_last_n :]
    best: dict[int, int] = {}
    for follower_at in range(1, len(window)):
        length = 0
        while (
            length < follower_at
            and window[follower_at - 1 - length] == window[len(window) - 1 - length]
            and window[len(window) - 1 - length] not in dry.breaker_ids
        ):
            length += 1
        if length >= dry.allowed_length and window[follower_at] not in dry.breaker_ids:
            token = window[follower_at]
            best[token] = max(best.get(token, 0), length)
    return {token: published(dry.multiplier, dry.base, k, dry.allowed_length) for token, k in best.items()}


def test_the_penalties_match_the_definition_on_random_histories() -> None:
    rng = random.Random(5)
    for trial in range(300):
        history = [rng.randrange(4) for _ in range(rng.randrange(1, 40))]
        dry = Dry(
            multiplier=rng.choice([0.5, 0.8, 2.0]),
            base=rng.choice([1.1, 1.75, 3.0]),
            allowed_length=rng.randrange(1, 4),
            penalty_last_n=rng.choice([-1, 8, 20]),
            breaker_ids=frozenset(rng.sample(range(4), rng.randrange(0, 2))),
        )
        expected = brute_force(history, dry)
        got = dry_penalties(history, dry)
        assert got.keys() == expected.keys(), (trial, history, dry)
        for token, amount in expected.items():
            assert got[token] == pytest.approx(amount), (trial, history, dry)


def test_the_processor_subtracts_each_rows_penalties() -> None:
    scores = torch.zeros(2, 20)
    ids = torch.tensor([[1, 2, 3, 4, 5, 1, 2, 3], [6, 6, 6, 6, 6, 6, 6, 6]])
    out = DryLogitsProcessor(DRY)(ids, scores)  # type: ignore[arg-type]
    assert out[0, 4].item() == pytest.approx(-published(0.8, 1.75, 3, 2))
    assert out[0].count_nonzero().item() == 1
    assert out[1, 6].item() == pytest.approx(-published(0.8, 1.75, 7, 2))
    assert scores.count_nonzero().item() == 0  # the caller's scores are left alone


def test_breakers_are_the_tokens_that_hold_them() -> None:
    vocabulary = ["a", "\n", ".\n", ":", "b", "**", "c:d"]
    assert breaker_token_ids(vocabulary, ["\n", ":", "*"]) == frozenset({1, 2, 3, 5, 6})


def dry_reference(loaded: LoadedModel, prompt: list[int], max_new_tokens: int, dry: Dry) -> list[int]:
    """The reply of ``model.generate`` with DRY as its one logits processor, for this prompt alone."""
    eos = sorted(loaded.eos_token_ids)
    output = loaded.model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        logits_processor=LogitsProcessorList([DryLogitsProcessor(dry)]),
        eos_token_id=eos,
        pad_token_id=eos[0],
    )
    reply = output[0, len(prompt) :].tolist()
    return reply[:-1] if reply and reply[-1] in eos else reply


async def test_rows_with_and_without_dry_keep_their_own_replies(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama)
    prompts = random_prompts(6, seed=31, longest=30)
    strong = Dry(multiplier=2.0, base=1.75, allowed_length=1)
    async with worker_paused(engine):  # DRY rows and plain rows in one batch, alternating
        handles = [
            engine.submit(GenerationRequest(prompt_ids=p, max_new_tokens=40, dry=strong if i % 2 else None))
            for i, p in enumerate(prompts)
        ]
    replies = [await collect(handle) for handle in handles]
    differs = False
    for index, (prompt, reply) in enumerate(zip(prompts, replies, strict=True)):
        plain = reference_greedy(tiny_llama, prompt, 40)
        if index % 2:
            assert reply == dry_reference(tiny_llama, prompt, 40, strong), f"DRY row {index}"
            differs |= reply != plain
        else:
            assert reply == plain, f"plain row {index}"
    assert differs, "DRY changed no reply: the test shows nothing"


def test_over_the_reply_alone_a_reply_may_quote_its_prompt() -> None:
    a, b, c, d = 10, 11, 12, 13
    prompt, reply = [a, b, c, d, 20], [a, b, c]  # the reply quotes "a b c", which the prompt followed with d
    assert d in dry_penalties(prompt + reply, DRY)
    assert dry_penalties(prompt + reply, Dry(multiplier=0.8, skip=len(prompt))) == {}
    # its own repeats still cost
    looping = reply + [d] + reply
    assert dry_penalties(prompt + looping, Dry(multiplier=0.8, skip=len(prompt))) == {d: pytest.approx(0.8 * 1.75)}
