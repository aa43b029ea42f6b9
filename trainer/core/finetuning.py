"""Fine-tuning a model on examples with the next-token loss, as `trainer finetune` and `trainer nightly`
both do: FinetuneSettings decide the optimizer, the schedule, the batches and the evaluations; the caller
decides what a better model, or a checkpoint, is written as.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import torch

from brain.settings import FinetuneSettings
from trainer.core import distributed
from trainer.core.batches import ExampleBatches, by_length
from trainer.core.distributed import Placement
from trainer.core.evaluation import mean_loss
from trainer.core.examples import Example
from trainer.core.loop import LoopResult, LoopSettings, LoopState, Snapshot, adamw, train
from trainer.core.lr_schedule import warmup_cosine_schedule
from trainer.core.objectives import NextToken


class FinetuneResult(LoopResult):
    train_examples: int
    val_examples: int


def total_steps(examples: int, settings: FinetuneSettings, grad_accum: int = 1) -> int:
    """The epochs' optimizer steps, at most settings.max_steps (when set)."""
    total = math.ceil(examples / (settings.batch_size * grad_accum)) * settings.epochs
    return min(total, settings.max_steps) if settings.max_steps else total


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
) -> FinetuneResult:
    """Train the model's trainable parameters (all of them, or a LoRA adapter's). A step takes
    ``settings.batch_size * grad_accum`` examples, in micro-batches within ``settings.max_batch_tokens``;
    the validation loss is measured at the start and every ``settings.eval_every`` steps, and training
    stops after ``settings.patience`` evaluations without a better one."""
    device = placement.device
    optimizer = adamw(model, settings.learning_rate, settings.weight_decay, device)
    total = total_steps(len(train_examples), settings, grad_accum)
    scheduler = warmup_cosine_schedule(optimizer, min(settings.warmup_steps, total - 1), total, settings.min_lr_ratio)
    batches = ExampleBatches(
        train_examples,
        batch_size=settings.batch_size * grad_accum,
        micro_batch_size=settings.batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        seed=settings.seed,
        pad_id=pad_id,
        rank=placement.rank,
        world_size=placement.world_size,
    )
    forward = distributed.data_parallel(model, placement)
    objective = NextToken()
    mine = val_examples[placement.rank :: placement.world_size]

    def validate() -> float:
        batches = by_length(mine, settings.batch_size, settings.max_batch_tokens, pad_id)
        return mean_loss(forward, batches, objective, device, placement=placement, autocast=placement.autocast)

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
    return FinetuneResult(**result.model_dump(), train_examples=len(train_examples), val_examples=len(val_examples))
