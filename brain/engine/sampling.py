"""Choosing each row's next token from a batch of logits.

Rows differ in their settings, so each sampled row gets its own transformers logits processors and its
own ``torch.Generator``; plain greedy rows (temperature 0, no repetition penalty) share one batched
``argmax`` and cost nothing per row.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


@dataclass
class RowSampler:
    """One row's way of picking tokens: ``processors`` is None for plain greedy."""

    processors: LogitsProcessorList | None
    sample: bool
    generator: torch.Generator | None


def make_sampler(
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    repetition_penalty: float,
    seed: int | None,
    device: torch.device,
) -> RowSampler:
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if temperature == 0.0:
        return RowSampler(processors or None, sample=False, generator=None)
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k > 0:
        processors.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    return RowSampler(processors, sample=True, generator=generator)


def pick_tokens(logits: torch.Tensor, samplers: list[RowSampler], histories: list[list[int]]) -> list[int]:
    """The next token of each row of ``logits`` ([rows, vocab]); ``histories`` feed the repetition penalty."""
    chosen = logits.argmax(dim=-1)
    for row, sampler in enumerate(samplers):
        if sampler.processors is None:
            continue
        scores = logits[row : row + 1].float()
        history = torch.tensor([histories[row]], dtype=torch.long, device=logits.device)
        scores = sampler.processors(history, scores)
        if sampler.sample:
            probs = torch.softmax(scores, dim=-1)
            chosen[row] = torch.multinomial(probs, num_samples=1, generator=sampler.generator)[0, 0]
        else:
            chosen[row] = scores.argmax(dim=-1)[0]
    return chosen.tolist()
