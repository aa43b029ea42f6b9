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
from pathlib import Path
from typing import Any, cast

import torch
from rich.console import Console
from transformers import PreTrainedTokenizerFast

from trainer.core import distributed
from trainer.core.config import PretrainConfig
from trainer.core.distributed import Placement
from trainer.core.evaluation import mean_loss
from trainer.core.loop import LoopResult, LoopSettings, LoopState, Snapshot, adamw, train
from trainer.core.lr_schedule import warmup_cosine_schedule
from trainer.core.objectives import NextToken
from trainer.core.text import load_clean_text
from trainer.errors import CheckpointError
from trainer.pretrain import checkpoint as ckpt
from trainer.pretrain import data as D
from trainer.pretrain.model import build_gpt, count_parameters, flops_per_token, generation_config, gpu_peak_flops
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
        return _pretrain(cfg, placement, restored, stop_after, progress, started)
    finally:
        distributed.stop(placement)


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
    checkpoints = out_dir / ckpt.CHECKPOINTS

    # -- data: every check that can fail runs here, before the tokenizer or the model costs anything
    text = load_clean_text(cfg.data)
    splits = D.split_text(text, cfg.split)
    fingerprint = D.fingerprint(text)
    needed = {"train": splits.train, "validation": splits.val}
    D.check_context_fits(cfg.block_size, {k: len(v.encode("utf-8")) for k, v in needed.items()})
    if restored is not None:
        tokenizer = restored.tokenizer
        if restored.meta["data"]["fingerprint"] != fingerprint:
            raise CheckpointError(
                f"the checkpoint {restored.path} was trained on other data than {cfg.data}; "
                "resume with the same data, or start a new run"
            )
    else:
        # characters: the alphabet of all the text, so the validation split has no unknowns;
        # BPE merges: learned from the training split only
        source = text if cfg.tokenizer == "char" else splits.train
        check_vocab_size(cfg.tokenizer, cfg.vocab_size, source)
        tokenizer_dir = checkpoints / "tokenizer"
        if placement.is_main:
            trained = train_tokenizer(cfg.tokenizer, source, cfg.vocab_size)
            trained.model_max_length = cfg.block_size
            trained.save_pretrained(tokenizer_dir)
        placement.barrier()
        from transformers import AutoTokenizer

        tokenizer = cast(PreTrainedTokenizerFast, AutoTokenizer.from_pretrained(tokenizer_dir))  # rank 0 trained it
    ids = {name: D.encode(part, tokenizer) for name, part in (("train", splits.train), ("val", splits.val))}
    D.check_context_fits(cfg.block_size, {"train": len(ids["train"]), "validation": len(ids["val"])})
    data_info: dict[str, Any] = {
        "path": str(cfg.data),
        "fingerprint": fingerprint,
        "characters": len(text),
        "split": list(cfg.split),
        "tokens": {name: int(len(v)) for name, v in ids.items()},
    }

    # -- model, optimizer, schedule, data: fresh, or as the checkpoint left them (the loop restores them)
    distributed.seed_everything(cfg.seed + placement.rank)
    device = placement.device
    model = restored.model if restored is not None else build_gpt(cfg.shape, tokenizer)
    model = model.to(device)
    model.train()
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, device, betas=(cfg.beta1, cfg.beta2))
    scheduler = warmup_cosine_schedule(optimizer, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
    sampler = D.BatchSampler(ids["train"], cfg.block_size, cfg.batch_size, cfg.seed, placement.rank)
    train_batches = D.WindowBatches(sampler, per_step=cfg.grad_accum)
    val_batches = D.BatchSampler(ids["val"], cfg.block_size, cfg.batch_size, cfg.seed + 1, placement.rank)
    resume_from = _snapshot(restored, placement) if restored is not None else None
    fast_model = cast(torch.nn.Module, torch.compile(model)) if cfg.compile else model

    peak = gpu_peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    meta: dict[str, Any] = {
        "format": "ownchat-gpt/1",
        "train_config": cfg.model_dump(),
        "tokenizer": describe(tokenizer, cfg.tokenizer),
        "data": data_info,
        "parameters": count_parameters(model, non_embedding=False),
        "world_size": placement.world_size,
        "tokens_per_step": cfg.batch_size * cfg.block_size * cfg.grad_accum * placement.world_size,
    }
    gen_config = generation_config(tokenizer)

    def save(name: str, loop: LoopState, snapshot: Snapshot | None) -> None:
        if not placement.is_main:
            return
        state = None
        if snapshot is not None:
            state = {
                "optimizer": snapshot.optimizer,
                "scheduler": snapshot.scheduler,
                "rng": snapshot.rng,
                "data_position": snapshot.data["position"],
                "world_size": placement.world_size,
            }
        info = {
            **meta,
            "step": loop.step,
            "best_step": loop.best_step,
            "best_val_loss": loop.best_val,
            "history": loop.history,
        }
        ckpt.save_checkpoint(checkpoints / name, model, tokenizer, gen_config, info, state)

    def validate() -> float:
        batches = val_batches.first(cfg.eval_batches)
        return mean_loss(fast_model, batches, NextToken(), device, placement=placement, autocast=placement.autocast)

    if placement.is_main and progress:
        console.print(
            f"pretraining {meta['parameters']:,} parameters on {data_info['tokens']['train']:,} tokens "
            f"({cfg.tokenizer}, vocabulary {len(tokenizer)}), {placement.world_size} process(es) on {device}"
        )
    settings = LoopSettings(
        label="pretrain",
        total_steps=cfg.max_steps,
        stop_after=stop_after,
        grad_clip=cfg.grad_clip,
        eval_every=cfg.eval_every,
        checkpoint_every=cfg.eval_every,
    )
    result = train(
        model,
        NextToken(),
        train_batches,
        validate,
        optimizer,
        scheduler,
        placement,
        settings,
        forward=distributed.data_parallel(fast_model, placement),
        keep_best=lambda loop: save("best", loop, None),
        save_checkpoint=lambda snapshot: save("last", snapshot.state, snapshot),
        resume=resume_from,
        progress=progress,
        flops_per_token=flops_per_token(model),
        peak_flops=peak,
    )

    if placement.is_main:
        export(out_dir, result.history, title=f"{Path(cfg.data).name}: {cfg.n_layer} layers, width {cfg.n_embd}")
    placement.barrier()
    return PretrainResult(**result.model_dump(), out_dir=out_dir, wall_s=time.perf_counter() - started)


def _snapshot(restored: ckpt.Checkpoint, placement: Placement) -> Snapshot:
    """What the loop restores from a checkpoint, written by as many processes as there are now."""
    state, meta = restored.state, restored.meta
    if state.get("world_size", 1) != placement.world_size:
        raise CheckpointError(
            f"the checkpoint {restored.path} was written by {state.get('world_size', 1)} processes; "
            f"resume it with the same number, not {placement.world_size}"
        )
    loop = LoopState(
        step=meta["step"], best_val=meta["best_val_loss"], best_step=meta["best_step"], history=meta["history"]
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
