"""Choosing each row's next token from a batch of logits.

Rows differ in their settings, so each sampled row gets its own transformers logits processors and its
own ``torch.Generator``; plain greedy rows (temperature 0, no repetition penalty) share one batched
``argmax`` and cost nothing per row.

A row whose settings turn out unusable (a seed the generator refuses, scores that overflow to inf or
NaN) fails alone: ``make_sampler`` raises :class:`SamplingError`, and ``pick_tokens`` returns one in
that row's place while every other row gets its token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

SEED_LIMIT = 2**64  # torch.Generator takes seeds below this
# markers in the chosen ids of rows that failed; never a token id
_MODEL_NAN = -2
_UNUSABLE = -1


class SamplingError(ValueError):
    """One request's sampling settings cannot be used; that request fails and the batch goes on."""


@dataclass
class RowSampler:
    """One row's way of picking tokens: ``processors`` is None for plain greedy."""

    processors: LogitsProcessorList | None
    sample: bool
    generator: torch.Generator | None


class StableTemperature(LogitsProcessor):
    """Divides the scores by the temperature after shifting the best one to 0.

    The distribution is the same as transformers' TemperatureLogitsWarper gives, but a tiny temperature
    sends the other scores to -inf (sampling turns greedy) instead of overflowing every score to inf.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return (scores - scores.max(dim=-1, keepdim=True).values) / self.temperature


def make_sampler(
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    repetition_penalty: float,
    seed: int | None,
    device: torch.device,
) -> RowSampler:
    """The sampler for one request's settings; :class:`SamplingError` if they cannot be used."""
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise SamplingError(f"seed must be between 0 and 2**64 - 1, not {seed}")
    try:
        return _build(temperature, top_p, top_k, repetition_penalty, seed, device)
    except Exception as error:  # whatever a processor or the generator refuses fails this request only
        raise SamplingError(f"the sampling settings cannot be used: {type(error).__name__}: {error}") from error


def _build(
    temperature: float, top_p: float, top_k: int, repetition_penalty: float, seed: int | None, device: torch.device
) -> RowSampler:
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if temperature == 0.0:
        return RowSampler(processors or None, sample=False, generator=None)
    if temperature != 1.0:
        processors.append(StableTemperature(temperature))
    if top_k > 0:
        processors.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    return RowSampler(processors, sample=True, generator=generator)


def pick_tokens(
    logits: torch.Tensor, samplers: list[RowSampler], histories: list[list[int]]
) -> list[int | SamplingError]:
    """The next token of each row of ``logits`` ([rows, vocab]), or the SamplingError of a row that failed.

    ``histories`` feed the repetition penalty. Failures are found without a host sync per row: an
    unusable row is still sampled from a harmless stand-in distribution (a NaN one could abort a GPU
    kernel) and marked, and the marks are read with the tokens.
    """
    chosen = logits.argmax(dim=-1)
    errors: dict[int, SamplingError] = {}
    for row, sampler in enumerate(samplers):
        if sampler.processors is None:
            continue
        try:
            chosen[row] = _pick_processed(logits[row : row + 1], sampler, histories[row])
        except Exception as error:
            errors[row] = SamplingError(f"sampling failed: {type(error).__name__}: {error}")
    chosen = torch.where(torch.isnan(logits).any(dim=-1), _MODEL_NAN, chosen)
    picks: list[int | SamplingError] = []
    for row, token in enumerate(chosen.tolist()):
        if row in errors:
            picks.append(errors[row])
        elif token == _MODEL_NAN:
            picks.append(SamplingError("the model's scores for this request are NaN; no token can be chosen"))
        elif token == _UNUSABLE:
            picks.append(
                SamplingError(
                    "the sampling settings leave no usable token scores (they overflow to inf or NaN); "
                    "use a repetition_penalty and temperature nearer 1"
                )
            )
        else:
            picks.append(token)
    return picks


def _pick_processed(logits: torch.Tensor, sampler: RowSampler, history_ids: list[int]) -> torch.Tensor:
    """One row's token after its processors, as a 0-d tensor; ``_UNUSABLE`` where the scores are broken."""
    assert sampler.processors is not None
    history = torch.tensor([history_ids], dtype=torch.long, device=logits.device)
    # transformers asks for torch.LongTensor, a type that no tensor constructor is annotated to return
    scores = sampler.processors(history, logits.float())  # type: ignore[arg-type]  # float32: bf16 overflows far sooner
    usable = torch.isfinite(scores).any() & ~(torch.isnan(scores) | torch.isposinf(scores)).any()
    if sampler.sample:
        probs = torch.softmax(torch.where(usable, scores, 0.0), dim=-1)
        token = torch.multinomial(probs, num_samples=1, generator=sampler.generator)[0, 0]
    else:
        token = scores.argmax(dim=-1)[0]
    return torch.where(usable, token, _UNUSABLE)
