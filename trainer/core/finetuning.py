"""Fine-tuning a model on examples with the next-token loss, as `trainer finetune` and `trainer nightly`
both do: FinetuneSettings decide the optimizer, the schedule, the batches and the evaluations; the caller
decides what a better model, or a checkpoint, is written as. Given ratings (PreferenceData), every step also
takes DPO pairs and KTO's rated replies, and the loss is the weighted sum of the three parts' means.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.core import distributed
from trainer.core.batches import (
    ExampleBatches,
    MixedBatches,
    by_length,
    chunks,
    collate,
    collate_pairs,
    collate_rated,
    scaled,
)
from trainer.core.distributed import Placement
from trainer.core.evaluation import mean_loss, reply_logprobs
from trainer.core.examples import Example, PairExample, RatedExample
from trainer.core.loop import BatchSource, LoopResult, LoopSettings, LoopState, Snapshot, adamw, train
from trainer.core.lr_schedule import warmup_cosine_schedule
from trainer.core.objectives import KTO, Mixture, NextToken, Objective, SigmoidDPO, kto_class_weights
from trainer.nightly.stats import auc
from trainer.settings import FinetuneSettings, PreferenceSettings


class FinetuneResult(LoopResult):
    train_examples: int
    val_examples: int
    # preference data trained on (DPO pairs, KTO's rated replies), and held out for validation
    train_pairs: int = 0
    train_rated: int = 0
    val_pairs: int = 0
    val_rated: int = 0
    # what the kept step was chosen by ("preference": the validation ratings' implied-reward AUC, its best_val
    # being 1 - AUC; "loss": the validation loss), and that AUC
    selected_by: str = "loss"
    val_preference_auc: float | None = None
    # KTO's lambda_D and lambda_U as trained with
    kto_desirable_weight: float = 1.0
    kto_undesirable_weight: float = 1.0


@dataclass
class PreferenceData:
    """Members' ratings as training data, with the reference model's log-probabilities already filled in."""

    settings: PreferenceSettings
    pairs: list[PairExample] = field(default_factory=list)
    rated: list[RatedExample] = field(default_factory=list)
    val_pairs: list[PairExample] = field(default_factory=list)
    val_rated: list[RatedExample] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pairs or self.rated)

    def val_ratings(self) -> tuple[list[Example], list[float], list[bool]]:
        """The validation replies (rated ones, and both of each pair) with their reference log-probability and
        whether they were liked (the chosen of a pair counts as liked)."""
        rows: list[Example] = []
        refs: list[float] = []
        liked: list[bool] = []
        for rated in self.val_rated:
            rows.append(rated.reply)
            refs.append(rated.ref_reply)
            liked.append(rated.desirable)
        for pair in self.val_pairs:
            rows += [pair.chosen, pair.rejected]
            refs += [pair.ref_chosen, pair.ref_rejected]
            liked += [True, False]
        return rows, refs, liked

    def selects(self) -> bool:
        """Whether the kept step is chosen by the validation ratings: asked for, and enough of each class."""
        liked = self.val_ratings()[2]
        least = min(sum(liked), len(liked) - sum(liked))
        return self.settings.select_by == "preference" and least >= self.settings.select_min_per_class

    def kto_weights(self) -> tuple[float, float]:
        """KTO's lambda_D and lambda_U: the settings', or from the training replies' counts."""
        if self.settings.kto_class_weights == "fixed":
            return self.settings.kto_desirable_weight, self.settings.kto_undesirable_weight
        liked = sum(r.desirable for r in self.rated)
        return kto_class_weights(liked, len(self.rated) - liked, self.settings.kto_class_ratio)


COLLATE: dict[str, Callable[[list[Any], int], Any]] = {
    "next_token": collate,
    "dpo": collate_pairs,
    "kto": collate_rated,
}


def total_steps(examples: int, settings: FinetuneSettings, grad_accum: int = 1) -> int:
    """The epochs' optimizer steps, at most settings.max_steps (when set)."""
    total = math.ceil(examples / (settings.batch_size * grad_accum)) * settings.epochs
    return min(total, settings.max_steps) if settings.max_steps else total


def in_batches(examples: list[Any], kind: str, settings: FinetuneSettings, pad_id: int) -> list[Any]:
    """Every example once, batched by size within the token budget, for evaluation."""
    ordered = sorted(examples, key=lambda e: e.size)
    return [COLLATE[kind](group, pad_id) for group in chunks(ordered, settings.batch_size, settings.max_batch_tokens)]


def fine_tune(
    model: torch.nn.Module,
    pad_id: int,
    train_examples: list[Example],
    val_examples: list[Example],
    settings: FinetuneSettings,
    placement: Placement,
    *,
    label: str,
    grad_accum: int = 1,
    keep_best: Callable[[LoopState], None] | None = None,
    save_checkpoint: Callable[[Snapshot], None] | None = None,
    resume: Snapshot | None = None,
    stop: threading.Event | None = None,
    progress: bool = True,
    preference: PreferenceData | None = None,
) -> FinetuneResult:
    """Train the model's trainable parameters (all of them, or a LoRA adapter's). A step takes
    ``settings.batch_size * grad_accum`` examples, in micro-batches within ``settings.max_batch_tokens``;
    the validation loss is measured at the start and every ``settings.eval_every`` steps, and training
    stops after ``settings.patience`` evaluations without a better one."""
    device = placement.device

    def source(examples: list[Any], kind: str) -> ExampleBatches:
        return ExampleBatches(
            examples,
            batch_size=settings.batch_size * grad_accum,
            micro_batch_size=settings.batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            seed=settings.seed,
            pad_id=pad_id,
            rank=placement.rank,
            world_size=placement.world_size,
            collate=COLLATE[kind],
        )

    def mine(examples: list[Any]) -> list[Any]:
        return examples[placement.rank :: placement.world_size]

    objective: Objective
    batches: BatchSource
    if not preference:
        objective, batches = NextToken(), source(train_examples, "next_token")
        total = total_steps(len(train_examples), settings, grad_accum)

        def val_batches() -> list[Any]:
            return by_length(mine(val_examples), settings.batch_size, settings.max_batch_tokens, pad_id)
    else:
        p = preference.settings
        class_weights = preference.kto_weights()
        mixture = Mixture({"next_token": NextToken(), "dpo": SigmoidDPO(p.beta), "kto": KTO(p.beta, *class_weights)})
        weights = {"next_token": p.next_token_weight, "dpo": p.dpo_weight, "kto": p.kto_weight}
        train_parts: dict[str, list[Any]] = {
            "next_token": train_examples,
            "dpo": preference.pairs,
            "kto": preference.rated,
        }
        val_parts: dict[str, list[Any]] = {
            "next_token": val_examples,
            "dpo": preference.val_pairs,
            "kto": preference.val_rated,
        }
        mixed = MixedBatches(
            {kind: (source(examples, kind), weights[kind]) for kind, examples in train_parts.items() if examples},
            mixture.units,
        )
        objective, batches = mixture, mixed
        epochs = mixed.steps_per_epoch * settings.epochs
        total = min(epochs, settings.max_steps) if settings.max_steps else epochs

        def val_batches() -> list[Any]:
            parts = {
                kind: (in_batches(mine(examples), kind, settings, pad_id), weights[kind])
                for kind, examples in val_parts.items()
            }
            return scaled(parts, mixture.units)

    optimizer = adamw(model, settings.learning_rate, settings.weight_decay, device)
    scheduler = warmup_cosine_schedule(optimizer, min(settings.warmup_steps, total - 1), total, settings.min_lr_ratio)
    forward = distributed.data_parallel(model, placement)

    selects = preference is not None and preference.selects()
    aucs: list[float] = []

    def validate() -> float:
        if preference is not None and selects:
            # 1 - AUC, so that lower is better as with a loss: the step members' ratings favour is kept
            rows, refs, liked = preference.val_ratings()
            logps = reply_logprobs(
                model, rows, batch_size=settings.batch_size, max_batch_tokens=settings.max_batch_tokens, pad_id=pad_id,
                device=device,
            )  # fmt: skip
            value = auc([policy - ref for policy, ref in zip(logps, refs, strict=True)], liked)
            aucs.append(0.5 if value is None else value)
            return 1 - aucs[-1]
        return mean_loss(forward, val_batches(), objective, device, placement=placement, autocast=placement.autocast)

    loop = LoopSettings(
        label=label,
        total_steps=total,
        grad_clip=settings.grad_clip,
        eval_every=settings.eval_every,
        patience=settings.patience,
        checkpoint_every=settings.checkpoint_every if save_checkpoint is not None else None,
    )
    result = train(
        model,
        objective,
        batches,
        validate,
        optimizer,
        scheduler,
        placement,
        loop,
        forward=forward,
        keep_best=keep_best,
        save_checkpoint=save_checkpoint,
        resume=resume,
        stop=stop,
        progress=progress,
    )
    counts: dict[str, Any] = {}
    if preference:
        counts = {
            "train_pairs": len(preference.pairs),
            "train_rated": len(preference.rated),
            "val_pairs": len(preference.val_pairs),
            "val_rated": len(preference.val_rated),
        }
        counts["kto_desirable_weight"], counts["kto_undesirable_weight"] = preference.kto_weights()
        if selects:
            counts["selected_by"], counts["val_preference_auc"] = "preference", 1 - result.best_val_loss
    return FinetuneResult(
        **result.model_dump(), train_examples=len(train_examples), val_examples=len(val_examples), **counts
    )
