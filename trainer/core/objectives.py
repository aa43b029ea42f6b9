"""What a training step minimises. An objective takes the model and a batch and returns the loss summed over
the batch's scored units, with how many there were; the loop divides by the units of the whole step, so
that a step split into micro-batches (or over processes) gets the gradient of the step's mean loss.

NextToken is the language-modelling loss of pretraining and of fine-tuning on text and chats. The preference
objectives learn from members' ratings, with the implied reward of a reply y to a prompt x being
beta * (log p(y|x) - log p_ref(y|x)), p_ref a frozen reference model whose log-probabilities come with the batch:

- SigmoidDPO, on pairs of replies to one prompt (a liked one and a less liked one), pushes the liked reply's
  implied reward above the other's: Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model
  is Secretly a Reward Model" (arXiv:2305.18290), eq. 7.
- KTO, on replies rated on their own, pushes a liked reply's implied reward above a reference point and a
  disliked one's below it: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization"
  (arXiv:2402.01306), eq. 8, with the reference point estimated from mismatched prompt-reply pairs of the batch.

Both follow TRL's definitions (DPOTrainer with loss_type "sigmoid", KTOTrainer with loss_type "kto"), which
TRL only has inline in its trainers' methods; see trainer/README.md for why they are written out here.
Retain keeps what a LoRA fine-tune is not to change, by distillation from the model with its adapter off.
Each owns its batching too (``collate``: its kind of examples into its kind of batch), so that
mixture.py can add them up in one step, each part by its own mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from trainer.core.batches import Batch, PairBatch, RatedBatch, collate, collate_pairs, collate_rated
from trainer.core.examples import IGNORE_INDEX, Example, PairExample, RatedExample


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


class ExampleObjective(Objective, Protocol):
    """An objective on examples of one kind (texts, pairs of replies, rated replies), which batches them itself."""

    name: str  # prefixes its metrics in a mixture

    def collate(self, examples: list[Any], pad_id: int) -> Any:
        """Examples of this objective's kind as one padded batch of its kind."""
        ...


class NextToken:
    """Cross-entropy of each target token given the tokens before it."""

    name = "next_token"

    def collate(self, examples: list[Example], pad_id: int) -> Batch:
        return collate(examples, pad_id)

    def count(self, batch: Batch) -> int:
        return int((batch.targets != IGNORE_INDEX).sum())

    def __call__(self, model: torch.nn.Module, batch: Batch) -> Loss:
        logits, targets, _ = target_logits(model, batch)
        total = F.cross_entropy(logits, targets, reduction="sum")
        return Loss(total=total, count=self.count(batch))


class Retain:
    """Distillation on what is to be kept (replay): at each target token, the KL divergence of the adapted
    model's next-token distribution from the base model's (the same model with its adapter switched off).
    The whole distribution, not only the base model's pick: a fact the base model holds by a small margin
    ("Madrid" 0.51 against "Barcelona" 0.18) is kept by keeping the margin, which the pick's cross-entropy
    does not ask for (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531)."""

    name = "retain"

    def collate(self, examples: list[Example], pad_id: int) -> Batch:
        return collate(examples, pad_id)

    def count(self, batch: Batch) -> int:
        return int((batch.targets != IGNORE_INDEX).sum())

    def __call__(self, model: torch.nn.Module, batch: Batch) -> Loss:
        with torch.no_grad(), adapter_off(model):
            base = target_logits(model, batch)[0].log_softmax(dim=-1)
        policy = target_logits(model, batch)[0].log_softmax(dim=-1)
        total = F.kl_div(policy, base, log_target=True, reduction="sum")
        return Loss(total=total, count=self.count(batch))


def target_logits(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits of the positions that predict a scored target of ``batch``, in float32 (scored, vocabulary),
    with those targets (scored,) and the row each is in (scored,). The vocabulary's head and its float32
    softmax are a large share of a small model's step, and a chat's prompt (never scored when the loss is on
    replies) is often half its tokens: the head runs only where a target is scored. The positions go to the
    model as Hugging Face's boolean ``logits_to_keep``, which hands the head one (positions, width) matrix:
    a strided slice of the states would make it copy its weight for every row."""
    width = batch.targets.size(1)
    scored = batch.targets != IGNORE_INDEX
    keep = F.pad(scored, (0, batch.input_ids.size(1) - width))  # the last input predicts nothing scored
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False, logits_to_keep=keep)
    rows = scored.nonzero()[:, 0]
    return out.logits.float(), batch.targets[scored], rows


def adapter_off(model: torch.nn.Module) -> Any:
    """peft's context in which the model (or the one a data-parallel wrapper holds) runs without its adapter."""
    inner: Any = getattr(model, "module", model)
    if not hasattr(inner, "disable_adapter"):
        raise TypeError("replay distils from the base model, which needs an adapter to switch off (a LoRA fine-tune)")
    return inner.disable_adapter()


def sequence_logps(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Each row's log-probability of its targets (a reply given its prompt), summed over the row: (rows,)."""
    logits, targets, rows = target_logits(model, batch)
    logps = -F.cross_entropy(logits, targets, reduction="none")
    return logps.new_zeros(batch.targets.size(0)).index_add(0, rows, logps)


class SigmoidDPO:
    """-log sigmoid(beta * (r_chosen - r_rejected)) per pair, r the log-ratio of policy to reference."""

    name = "dpo"

    def __init__(self, beta: float):
        self.beta = beta

    def collate(self, pairs: list[PairExample], pad_id: int) -> PairBatch:
        return collate_pairs(pairs, pad_id)

    def count(self, batch: PairBatch) -> int:
        return batch.rows.input_ids.size(0) // 2

    def __call__(self, model: torch.nn.Module, batch: PairBatch) -> Loss:
        ratios = sequence_logps(model, batch.rows) - batch.ref_logps
        chosen, rejected = ratios.chunk(2)
        margins = self.beta * (chosen - rejected)
        losses = -F.logsigmoid(margins)
        metrics = {
            "reward_accuracy": float((margins > 0).float().mean()),
            "reward_margin": float(margins.detach().mean()),
        }
        return Loss(total=losses.sum(), count=self.count(batch), metrics=metrics)


class KTO:
    """A liked reply costs lambda_D * (1 - sigmoid(beta * (r - z0))), a disliked one lambda_U * (1 - sigmoid(beta *
    (z0 - r))), r the reply's log-ratio of policy to reference and z0 the mean log-ratio of the batch's mismatched
    pairs (an estimate of KL(policy || reference)), clamped at 0 and not differentiated through."""

    name = "kto"

    def __init__(self, beta: float, desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
        self.beta = beta
        self.desirable_weight = desirable_weight
        self.undesirable_weight = undesirable_weight

    def collate(self, rated: list[RatedExample], pad_id: int) -> RatedBatch:
        return collate_rated(rated, pad_id)

    def count(self, batch: RatedBatch) -> int:
        return int(batch.desirable.numel())

    def __call__(self, model: torch.nn.Module, batch: RatedBatch) -> Loss:
        # z0 is not differentiated through, so its forward pass keeps no graph (half of KTO's backward, saved)
        with torch.no_grad():
            z0 = (sequence_logps(model, batch.mismatched) - batch.ref_mismatched).mean().clamp(min=0)
        replies = sequence_logps(model, batch.rows) - batch.ref_logps
        liked = self.desirable_weight * (1 - torch.sigmoid(self.beta * (replies - z0)))
        disliked = self.undesirable_weight * (1 - torch.sigmoid(self.beta * (z0 - replies)))
        losses = torch.where(batch.desirable, liked, disliked)
        return Loss(total=losses.sum(), count=self.count(batch), metrics={"kl": float(z0)})


def kto_class_weights(desirable: int, undesirable: int, ratio: float = 1.0) -> tuple[float, float]:
    """KTO's lambda_D and lambda_U from the counts of liked and disliked replies, so that
    lambda_D * n_D / (lambda_U * n_U) equals ``ratio`` (the KTO paper, section 4.2, and TRL's KTOConfig ask for
    a value in [1, 4/3]). They are scaled so that lambda_D * n_D + lambda_U * n_U = n_D + n_U: the part's
    weight in the mixture stays what the settings say, and a night with 3 likes among 80 ratings gives each
    like about 13 times a dislike's weight instead of letting the dislikes drown them. With one class
    missing there is nothing to balance: (1, 1)."""
    if not 1.0 <= ratio <= 4 / 3:
        raise ValueError(f"the KTO class ratio must lie in [1, 4/3], not {ratio}")
    if desirable <= 0 or undesirable <= 0:
        return 1.0, 1.0
    total = desirable + undesirable
    return ratio * total / ((1 + ratio) * desirable), total / ((1 + ratio) * undesirable)
