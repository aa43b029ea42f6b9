"""Several objectives in one step: a fine-tune's next-token part (texts and chats), DPO part (pairs of replies)
and KTO part (rated replies), each with a weight. A part's units are of its own kind (tokens, pairs, replies),
so each micro-batch's summed loss is scaled such that the loop's sum over the step, divided by the step's
units, is the weighted sum of the parts' means, however the parts are split into micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from trainer.core.batches import ExampleBatches
from trainer.core.objectives import ExampleObjective, Loss

T = TypeVar("T")


@dataclass(frozen=True)
class Weighted(Generic[T]):
    """One part of a mixture: its objective, its weight in the step's loss, and its data (micro-batches, or
    their source)."""

    objective: ExampleObjective
    weight: float
    data: T


@dataclass
class ScaledBatch:
    """A micro-batch of one part, with the factor its summed loss is scaled by (see ``scaled``)."""

    objective: ExampleObjective
    batch: Any
    scale: float = 1.0

    def to(self, device: torch.device) -> ScaledBatch:
        return ScaledBatch(self.objective, self.batch.to(device), self.scale)

    @property
    def tokens(self) -> int:
        return int(self.batch.tokens)


def scaled(parts: list[Weighted[list[Any]]]) -> list[ScaledBatch]:
    """One step's micro-batches of each part as ScaledBatches: each scaled by the part's weight x (the step's
    units) / (its part's units). A part of weight 0, or with nothing to score, is left out."""
    units = [sum(part.objective.count(batch) for batch in part.data) if part.weight else 0 for part in parts]
    total = sum(units)
    return [
        ScaledBatch(part.objective, batch, part.weight * total / n)
        for part, n in zip(parts, units, strict=True)
        if n
        for batch in part.data
    ]


class Mixture:
    """The objective of ScaledBatches: each by its own part's objective, scaled, so that the step's loss is the
    weighted sum of the parts' means."""

    def count(self, batch: ScaledBatch) -> int:
        return batch.objective.count(batch.batch)

    def __call__(self, model: torch.nn.Module, batch: ScaledBatch) -> Loss:
        loss = batch.objective(model, batch.batch)
        metrics = {f"{batch.objective.name}_{name}": value for name, value in loss.metrics.items()}
        return Loss(total=loss.total * batch.scale, count=loss.count, metrics=metrics)


class MixedBatches:
    """Batch sources stepped together, one per part: step n holds each part's step-n micro-batches, scaled.
    Each part runs through its own epochs (a small part repeats sooner)."""

    def __init__(self, parts: list[Weighted[ExampleBatches]]):
        self.parts = parts

    @property
    def steps_per_epoch(self) -> int:
        """Steps for every part to go through its examples once."""
        return max(part.data.steps_per_epoch for part in self.parts)

    def for_step(self, step: int) -> list[ScaledBatch]:
        return scaled([Weighted(part.objective, part.weight, part.data.for_step(step)) for part in self.parts])

    def state(self) -> dict[str, int]:
        return {}

    def restore(self, state: dict[str, int]) -> None:
        pass  # the step alone says where the data is
