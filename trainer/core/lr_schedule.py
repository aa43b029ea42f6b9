"""The learning-rate schedule of every training run: linear warmup, then half a cosine down to a floor."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, warmup: int, total: int, floor: float) -> float:
    """The factor on the peak rate at `step`: linear warmup, then half a cosine down to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int, floor: float
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total, floor))
