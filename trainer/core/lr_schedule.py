"""The learning-rate schedule shared by pretraining and fine-tuning."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, total: int, floor: float) -> float:
    """The factor on the peak rate at `step`: linear warmup, then half a cosine down to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
