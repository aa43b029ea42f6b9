"""Pretraining from random weights, top to bottom: check the input, read and split the data, train or
restore the tokenizer, build or restore the model, run the trainer's loop, export the best model.

The loop (trainer/core/loop.py) is the one fine-tuning uses, with the next-token objective on random
windows of the text; the best model by validation loss is kept as a checkpoint (`best`), the state to
resume from at every evaluation (`last`). torch.compile on request, DDP when launched by torchrun.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from rich.console import Console
from transformers import PreTrainedTokenizerFast

from trainer.core import distributed
from trainer.core.config import PretrainConfig
from trainer.core.distributed import Placement
from trainer.core.evaluation import mean_loss
from trainer.core.loop import LoopHooks, LoopResult, LoopSettings, LoopState, Snapshot, Training, adamw, train
from trainer.core.lr_schedule import warmup_cosine_schedule
from trainer.core.objectives import NextToken
from trainer.core.text import load_clean_text
from trainer.errors import CheckpointError
from trainer.pretrain import checkpoint as ckpt
from trainer.pretrain import data as D
from trainer.pretrain.model import GPT, build_gpt, count_parameters, flops_per_token, generation_config, gpu_peak_flops
from trainer.pretrain.plot import plot_loss_curves
from trainer.pretrain.tokenizer import check_vocab_size, describe, train_tokenizer

console = Console(stderr=True)


class PretrainResult(LoopResult):
    out_dir: Path
    wall_s: float


def pretrain(
    cfg: PretrainConfig,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> PretrainResult:
    """Train a GPT on `cfg.data`; with `resume`, continue a checkpoint exactly where it stopped.

    `stop_after` ends the run after that many steps (the schedule still follows max_steps), leaving a
    checkpoint to resume from: a long run can be cut into pieces.
    """
    started = time.perf_counter()
    restored = ckpt.load_checkpoint(resume) if resume is not None else None
    if restored is not None:
        _check_same_model(cfg, restored)
    placement = distributed.start(cfg.device)
    try:
        result = _pretrain(cfg, placement, restored, stop_after, progress, started)
    except BaseException:
        distributed.stop(placement, failed=True)
        raise
    distributed.stop(placement)
    return result


def resume_config(path: str | Path, **overrides: Any) -> PretrainConfig:
    """The training config a checkpoint was written with; overrides (data path, out_dir, device,
    compile) replace saved values where they are not None."""
    meta = ckpt.read_meta(ckpt.resolve(path))
    saved = {k: v for k, v in meta["train_config"].items() if k in PretrainConfig.model_fields}
    saved.update({k: v for k, v in overrides.items() if v is not None})
    return PretrainConfig(**saved)


def _check_same_model(cfg: PretrainConfig, restored: ckpt.Checkpoint) -> None:
    s = restored.model.shape
    saved = (s.n_layer, s.n_head, s.n_embd, s.block_size)
    if saved != (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size):
        raise CheckpointError(
            f"the checkpoint {restored.path} holds a model of (layers, heads, width, context) {saved}, "
            "not the one configured; resume with the checkpoint's own settings (see resume_config)"
        )


def _pretrain(
    cfg: PretrainConfig,
    placement: Placement,
    restored: ckpt.Checkpoint | None,
    stop_after: int | None,
    progress: bool,
    started: float,
) -> PretrainResult:
    out_dir = Path(cfg.out_dir).expanduser()
    corpus = read_corpus(cfg, restored)
    tokenizer = restored.tokenizer if restored is not None else make_tokenizer(cfg, corpus, placement, out_dir)
    ids = encode_corpus(cfg, corpus, tokenizer)

    # model, optimizer, schedule, batches: fresh, or as the checkpoint left them (the loop restores them)
    distributed.seed_everything(cfg.seed + placement.rank)
    model = make_model(cfg, restored, tokenizer, placement.device)
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, placement.device, betas=(cfg.beta1, cfg.beta2))
    scheduler = warmup_cosine_schedule(optimizer, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
    train_batches, val_batches = make_batches(cfg, ids, placement)
    resume_from = _snapshot(restored, placement) if restored is not None else None
    fast_model = cast(torch.nn.Module, torch.compile(model)) if cfg.compile else model

    meta = describe_run(cfg, corpus, tokenizer, ids, model, placement)
    writer = CheckpointWriter(out_dir / ckpt.CHECKPOINTS, model, tokenizer, meta, placement)
    if placement.is_main and progress:
        announce(cfg, meta, tokenizer, placement)
    training = Training(
        model=model,
        forward=distributed.data_parallel(fast_model, placement),
        objective=NextToken(),
        batches=train_batches,
        validate=validator(cfg, fast_model, val_batches, placement),
        optimizer=optimizer,
        scheduler=scheduler,
    )
    hooks = LoopHooks(
        keep_best=lambda loop: writer.save("best", loop, None),
        save_checkpoint=lambda snapshot: writer.save("last", snapshot.state, snapshot),
    )
    result = train(training, loop_settings(cfg, stop_after, progress, model, placement), placement, hooks, resume_from)

    if placement.is_main:
        export(out_dir, result.history, title=f"{Path(cfg.data).name}: {cfg.n_layer} layers, width {cfg.n_embd}")
    placement.barrier()
    return PretrainResult(**result.model_dump(), out_dir=out_dir, wall_s=time.perf_counter() - started)


@dataclass(frozen=True)
class Corpus:
    text: str
    splits: D.Splits
    fingerprint: str


def read_corpus(cfg: PretrainConfig, restored: ckpt.Checkpoint | None) -> Corpus:
    """The text and its splits, checked before the tokenizer or the model costs anything: the context fits each
    split, and a resumed run reads the data it was trained on."""
    text = load_clean_text(cfg.data)
    splits = D.split_text(text, cfg.split)
    fingerprint = D.fingerprint(text)
    needed = {"train": splits.train, "validation": splits.val}
    D.check_context_fits(cfg.block_size, {k: len(v.encode("utf-8")) for k, v in needed.items()})
    if restored is not None and restored.meta["data"]["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"the checkpoint {restored.path} was trained on other data than {cfg.data}; "
            "resume with the same data, or start a new run"
        )
    return Corpus(text=text, splits=splits, fingerprint=fingerprint)


def make_tokenizer(cfg: PretrainConfig, corpus: Corpus, placement: Placement, out_dir: Path) -> PreTrainedTokenizerFast:
    """A new tokenizer, trained by the first process and read from disk by every one."""
    # characters: the alphabet of all the text, so the validation split has no unknowns;
    # BPE merges: learned from the training split only
    source = corpus.text if cfg.tokenizer == "char" else corpus.splits.train
    check_vocab_size(cfg.tokenizer, cfg.vocab_size, source)
    tokenizer_dir = out_dir / ckpt.CHECKPOINTS / "tokenizer"
    if placement.is_main:
        trained = train_tokenizer(cfg.tokenizer, source, cfg.vocab_size)
        trained.model_max_length = cfg.block_size
        trained.save_pretrained(tokenizer_dir)
    placement.barrier()
    from transformers import AutoTokenizer

    return cast(PreTrainedTokenizerFast, AutoTokenizer.from_pretrained(tokenizer_dir))  # rank 0 trained it


def make_model(
    cfg: PretrainConfig, restored: ckpt.Checkpoint | None, tokenizer: PreTrainedTokenizerFast, device: torch.device
) -> GPT:
    """Random weights (GPT-2's initialisation), or the checkpoint's; in training mode on the device."""
    model = restored.model if restored is not None else build_gpt(cfg.shape, tokenizer)
    model = model.to(device)
    model.train()
    return model


def make_batches(
    cfg: PretrainConfig, ids: dict[str, np.ndarray], placement: Placement
) -> tuple[D.WindowBatches, D.BatchSampler]:
    """Random windows of the training split, ``grad_accum`` batches a step, and of the validation split; each
    process draws its own."""
    sampler = D.BatchSampler(ids["train"], cfg.block_size, cfg.batch_size, cfg.seed, placement.rank)
    train_batches = D.WindowBatches(sampler, per_step=cfg.grad_accum)
    val_batches = D.BatchSampler(ids["val"], cfg.block_size, cfg.batch_size, cfg.seed + 1, placement.rank)
    return train_batches, val_batches


def encode_corpus(cfg: PretrainConfig, corpus: Corpus, tokenizer: PreTrainedTokenizerFast) -> dict[str, np.ndarray]:
    """The token ids of the training and validation splits, each long enough for the context."""
    ids = {
        name: D.encode(part, tokenizer) for name, part in (("train", corpus.splits.train), ("val", corpus.splits.val))
    }
    D.check_context_fits(cfg.block_size, {"train": len(ids["train"]), "validation": len(ids["val"])})
    return ids


def describe_run(
    cfg: PretrainConfig,
    corpus: Corpus,
    tokenizer: PreTrainedTokenizerFast,
    ids: dict[str, np.ndarray],
    model: GPT,
    placement: Placement,
) -> dict[str, Any]:
    """What every checkpoint of the run says of it (checkpoint.json, with the step and the losses)."""
    return {
        "format": "ownchat-gpt/1",
        "train_config": cfg.model_dump(),
        "tokenizer": describe(tokenizer, cfg.tokenizer),
        "data": {
            "path": str(cfg.data),
            "fingerprint": corpus.fingerprint,
            "characters": len(corpus.text),
            "split": list(cfg.split),
            "tokens": {name: int(len(v)) for name, v in ids.items()},
        },
        "parameters": count_parameters(model, non_embedding=False),
        "world_size": placement.world_size,
        "tokens_per_step": cfg.batch_size * cfg.block_size * cfg.grad_accum * placement.world_size,
    }


@dataclass
class CheckpointWriter:
    """Writes the run's checkpoints (``best``: the model alone; ``last``: with the state to resume from), on
    the first process only."""

    folder: Path
    model: GPT
    tokenizer: PreTrainedTokenizerFast
    meta: dict[str, Any]
    placement: Placement

    def save(self, name: str, loop: LoopState, snapshot: Snapshot | None) -> None:
        if not self.placement.is_main:
            return
        state = None
        if snapshot is not None:
            state = {
                "optimizer": snapshot.optimizer,
                "scheduler": snapshot.scheduler,
                "rng": snapshot.rng,
                "data_position": snapshot.data["position"],
                "world_size": self.placement.world_size,
            }
        info = {
            **self.meta,
            "step": loop.step,
            "best_step": loop.best_step,
            "best_val_loss": loop.kept_val,
            "history": loop.history,
        }
        gen_config = generation_config(self.tokenizer)
        ckpt.save_checkpoint(self.folder / name, self.model, self.tokenizer, gen_config, info, state)


def announce(
    cfg: PretrainConfig, meta: dict[str, Any], tokenizer: PreTrainedTokenizerFast, placement: Placement
) -> None:
    console.print(
        f"pretraining {meta['parameters']:,} parameters on {meta['data']['tokens']['train']:,} tokens "
        f"({cfg.tokenizer}, vocabulary {len(tokenizer)}), {placement.world_size} process(es) on {placement.device}"
    )


def validator(
    cfg: PretrainConfig, model: torch.nn.Module, batches: D.BatchSampler, placement: Placement
) -> Callable[[], float]:
    """The validation loss, always on the same first ``eval_batches`` batches of the validation split."""

    def validate() -> float:
        first = batches.first(cfg.eval_batches)
        return mean_loss(model, first, NextToken(), placement.device, placement=placement, autocast=placement.autocast)

    return validate


def peak_flops(device: torch.device) -> float | None:
    """The GPU's peak, for model FLOPs utilisation in the progress line (None: unknown, or no GPU)."""
    return gpu_peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def loop_settings(
    cfg: PretrainConfig, stop_after: int | None, progress: bool, model: GPT, placement: Placement
) -> LoopSettings:
    return LoopSettings(
        label="pretrain",
        total_steps=cfg.max_steps,
        stop_after=stop_after,
        grad_clip=cfg.grad_clip,
        eval_every=cfg.eval_every,
        checkpoint_every=cfg.eval_every,
        progress=progress,
        flops_per_token=flops_per_token(model),
        peak_flops=peak_flops(placement.device),
    )


def _snapshot(restored: ckpt.Checkpoint, placement: Placement) -> Snapshot:
    """What the loop restores from a checkpoint, written by as many processes as there are now."""
    state, meta = restored.state, restored.meta
    if state.get("world_size", 1) != placement.world_size:
        raise CheckpointError(
            f"the checkpoint {restored.path} was written by {state.get('world_size', 1)} processes; "
            f"resume it with the same number, not {placement.world_size}"
        )
    best = meta["best_val_loss"]
    loop = LoopState(
        step=meta["step"], best_val=best, kept_val=best, best_step=meta["best_step"], history=meta["history"]
    )
    return Snapshot(
        state=loop,
        optimizer=state["optimizer"],
        scheduler=state["scheduler"],
        rng=state["rng"],
        data={"position": state["data_position"]},
    )


def export(out_dir: Path, history: dict, title: str) -> None:
    """The best checkpoint becomes the run directory's Hugging Face model; curves go beside it."""
    best = out_dir / ckpt.CHECKPOINTS / "best"
    for item in best.iterdir():
        if item.is_file() and item.name != ckpt.STATE_FILE:
            shutil.copy2(item, out_dir / item.name)
    (out_dir / "history.json").write_text(json.dumps(history) + "\n")
    plot_loss_curves(history, out_dir / "loss_curves.png", title=title)
