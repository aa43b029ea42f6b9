"""What a training step minimises. An objective takes the model and a batch and returns the loss summed over
the batch's scored units, with how many there were; the loop divides by the units of the whole step, so
that a step split into micro-batches (or over processes) gets the gradient of the step's mean loss.

NextToken is the language-modelling loss of pretraining and of fine-tuning on text and chats. A
preference objective (DPO, KTO) fits the same protocol: its batches hold pairs, its units are pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from trainer.core.batches import Batch
from trainer.core.examples import IGNORE_INDEX


@dataclass
class Loss:
    total: torch.Tensor  # summed over the scored units, with its graph
    count: int  # how many units were scored
    metrics: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    def count(self, batch: Any) -> int:
        """The units of ``batch`` the loss is taken over, known before the forward pass."""
        ...

    def __call__(self, model: torch.nn.Module, batch: Any) -> Loss: ...


class NextToken:
    """Cross-entropy of each target token given the tokens before it."""

    def count(self, batch: Batch) -> int:
        return int((batch.targets != IGNORE_INDEX).sum())

    def __call__(self, model: torch.nn.Module, batch: Batch) -> Loss:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        logits = logits[:, : batch.targets.size(1)].float()  # the last input predicts nothing scored
        total = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), batch.targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return Loss(total=total, count=self.count(batch))
