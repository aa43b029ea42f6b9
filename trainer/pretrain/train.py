"""Pretraining from random weights, top to bottom: check the input, read and split the data, train or
restore the tokenizer, build or restore the model, run the loop, export the best model.

The loop: AdamW, linear warmup then cosine decay to a floor, gradient accumulation and clipping,
bf16 autocast on CUDA, evaluation every K steps keeping the best checkpoint by validation loss,
a rich progress bar, optional torch.compile, and DDP when launched by torchrun.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel as DDP

from trainer import runtime as rt
from trainer.errors import CheckpointError, ConfigError
from trainer.pretrain import checkpoint as ckpt
from trainer.pretrain import data as D
from trainer.pretrain.model import (
    GPTShape,
    build_gpt,
    count_parameters,
    flops_per_token,
    generation_config,
    gpu_peak_flops,
)
from trainer.pretrain.plot import plot_loss_curves
from trainer.pretrain.tokenizer import TokenizerKind, check_vocab_size, describe, train_tokenizer
from trainer.schedule import warmup_cosine

console = Console(stderr=True)


@dataclass
class PretrainConfig:
    data: str
    out_dir: str = "runs/gpt"
    tokenizer: TokenizerKind = "char"
    vocab_size: int | None = None
    split: tuple[float, float, float] = (0.9, 0.05, 0.05)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    batch_size: int = 12
    grad_accum: int = 1
    max_steps: int = 2000
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 50
    seed: int = 1337
    compile: bool = False
    device: str = "auto"

    @property
    def shape(self) -> GPTShape:
        return GPTShape(self.n_layer, self.n_head, self.n_embd, self.block_size, self.dropout)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if "split" in values:
            values["split"] = tuple(values["split"])
        return cls(**values)

    def validate(self) -> None:
        self.shape  # noqa: B018 -- GPTShape checks the model's dimensions
        if self.tokenizer not in ("char", "bpe"):
            raise ConfigError(f"unknown tokenizer {self.tokenizer!r}: use char or bpe")
        self.split = D.parse_fractions(self.split)
        positive = ("batch_size", "grad_accum", "max_steps", "eval_every", "eval_batches")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0:
            raise ConfigError("the learning rate must be positive, min_lr_ratio in [0, 1], warmup >= 0")


@dataclass
class PretrainResult:
    out_dir: Path
    step: int
    best_step: int
    best_val_loss: float
    train_tokens_per_s: float
    wall_s: float
    history: dict[str, list] = field(default_factory=dict)


def lr_factor(step: int, cfg: PretrainConfig) -> float:
    return warmup_cosine(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    # matrices decay; biases and LayerNorm gains do not (as in GPT-2 and nanoGPT)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda" or None)


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, sampler: D.BatchSampler, batches: int, run: rt.Runtime) -> float:
    """Mean loss over the same `batches` windows every time, so evaluations compare step to step."""
    was_training = model.training
    model.eval()
    sampler.position = 0
    total = 0.0
    for _ in range(batches):
        x, y = sampler.next()
        with run.autocast():
            total += lm_loss(model, x.to(run.device), y.to(run.device)).item()
    model.train(was_training)
    return rt.mean_across_ranks(total / batches, run)


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
    cfg.validate()
    restored = ckpt.load_checkpoint(resume) if resume is not None else None
    if restored is not None:
        _check_same_model(cfg, restored)
    run = rt.start(cfg.device)
    try:
        return _pretrain(cfg, run, restored, stop_after, progress, started)
    finally:
        rt.stop(run)


def resume_config(path: str | Path, **overrides: Any) -> PretrainConfig:
    """The training config a checkpoint was written with; overrides (data path, out_dir, device,
    compile) replace saved values where they are not None."""
    meta = ckpt.read_meta(ckpt.resolve(path))
    saved = dict(meta["train_config"])
    saved.update({k: v for k, v in overrides.items() if v is not None})
    return PretrainConfig.from_dict(saved)


def _check_same_model(cfg: PretrainConfig, restored: ckpt.Checkpoint) -> None:
    c = restored.model.config
    saved = (c.n_layer, c.n_head, c.n_embd, c.n_positions)
    if saved != (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size):
        raise CheckpointError(
            f"the checkpoint {restored.path} holds a model of (layers, heads, width, context) {saved}, "
            "not the one configured; resume with the checkpoint's own settings (see resume_config)"
        )


def _pretrain(
    cfg: PretrainConfig,
    run: rt.Runtime,
    restored: ckpt.Checkpoint | None,
    stop_after: int | None,
    progress: bool,
    started: float,
) -> PretrainResult:
    out_dir = Path(cfg.out_dir).expanduser()
    checkpoints = out_dir / ckpt.CHECKPOINTS

    # -- data: every check that can fail runs here, before the tokenizer or the model costs anything
    text = D.load_clean_text(cfg.data)
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
        if run.is_main:
            trained = train_tokenizer(cfg.tokenizer, source, cfg.vocab_size)
            trained.model_max_length = cfg.block_size
            trained.save_pretrained(tokenizer_dir)
        run.barrier()
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = {name: D.encode(part, tokenizer) for name, part in (("train", splits.train), ("val", splits.val))}
    D.check_context_fits(cfg.block_size, {"train": len(ids["train"]), "validation": len(ids["val"])})
    data_info = {
        "path": str(cfg.data),
        "fingerprint": fingerprint,
        "characters": len(text),
        "split": list(cfg.split),
        "tokens": {name: int(len(v)) for name, v in ids.items()},
    }

    # -- model, optimizer, schedule, data position: fresh, or exactly as the checkpoint left them
    rt.seed_everything(cfg.seed + run.rank)
    model = (restored.model if restored is not None else build_gpt(cfg.shape, tokenizer)).to(run.device)
    model.train()
    optimizer = make_optimizer(model, cfg, run.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    train_batches = D.BatchSampler(ids["train"], cfg.block_size, cfg.batch_size, cfg.seed, run.rank)
    val_batches = D.BatchSampler(ids["val"], cfg.block_size, cfg.batch_size, cfg.seed + 1, run.rank)
    step, best_val, best_step = 0, math.inf, 0
    history: dict[str, list] = {"train": [], "val": [], "lr": []}
    if restored is not None:
        state = restored.state
        if state.get("world_size", 1) != run.world_size:
            raise CheckpointError(
                f"the checkpoint {restored.path} was written by {state.get('world_size', 1)} processes; "
                f"resume it with the same number, not {run.world_size}"
            )
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        train_batches.position = state["data_position"]
        rt.set_rng_state(state["rng"][run.rank])
        step, best_val, best_step = restored.meta["step"], restored.meta["best_val_loss"], restored.meta["best_step"]
        history = restored.meta["history"]
    fast_model = torch.compile(model) if cfg.compile else model
    train_model = (
        DDP(fast_model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
        if run.distributed
        else fast_model
    )

    flops = flops_per_token(model)
    peak = gpu_peak_flops(torch.cuda.get_device_name(run.device)) if run.device.type == "cuda" else None
    meta = {
        "format": "ownchat-gpt/1",
        "train_config": asdict(cfg),
        "tokenizer": describe(tokenizer, cfg.tokenizer),
        "data": data_info,
        "parameters": count_parameters(model, non_embedding=False),
        "world_size": run.world_size,
        "tokens_per_step": cfg.batch_size * cfg.block_size * cfg.grad_accum * run.world_size,
    }
    gen_config = generation_config(tokenizer)
    tokens_per_step = meta["tokens_per_step"]

    def save(name: str, with_state: bool) -> None:
        state = None
        if with_state:
            rngs = rt.all_gather(rt.rng_state(), run)
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rngs,
                "data_position": train_batches.position,
                "world_size": run.world_size,
            }
        if run.is_main:
            info = {**meta, "step": step, "best_step": best_step, "best_val_loss": best_val, "history": history}
            ckpt.save_checkpoint(checkpoints / name, model, tokenizer, gen_config, info, state)
        run.barrier()

    def evaluate() -> float:
        nonlocal best_val, best_step
        val = estimate_loss(fast_model, val_batches, cfg.eval_batches, run)
        history["val"].append([step, val])
        improved = val < best_val
        if improved:
            best_val, best_step = val, step
            save("best", with_state=False)
        save("last", with_state=True)
        if run.is_main and progress:
            console.print(f"step {step:>6}: val loss {val:.4f}" + ("  (best, saved)" if improved else ""))
        return val

    if run.is_main and progress:
        console.print(
            f"pretraining {meta['parameters']:,} parameters on {data_info['tokens']['train']:,} tokens "
            f"({cfg.tokenizer}, vocabulary {len(tokenizer)}), {run.world_size} process(es) on {run.device}"
        )
    if step == 0:
        evaluate()
    limit = min(cfg.max_steps, stop_after) if stop_after is not None else cfg.max_steps
    train_time, train_tokens, tok_s, val = 0.0, 0, 0.0, history["val"][-1][1] if history["val"] else math.nan
    bar = rt.progress_bar("pretrain", console, enabled=progress and run.is_main)
    with bar:
        task = bar.add_task("pretrain", total=cfg.max_steps, completed=step, info="")
        while step < limit:
            t0 = time.perf_counter()
            step_loss = 0.0
            for micro in range(cfg.grad_accum):
                x, y = train_batches.next()
                x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
                # under DDP, gradients are all-reduced on the last micro-batch only
                sync = not run.distributed or micro == cfg.grad_accum - 1
                with train_model.no_sync() if not sync else contextlib.nullcontext(), run.autocast():
                    loss = lm_loss(train_model, x, y) / cfg.grad_accum
                loss.backward()
                step_loss += loss.item()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            history["lr"].append([step, scheduler.get_last_lr()[0]])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            dt = time.perf_counter() - t0
            step += 1
            train_time += dt
            train_tokens += tokens_per_step
            tok_s = tokens_per_step / dt if tok_s == 0 else 0.9 * tok_s + 0.1 * tokens_per_step / dt
            history["train"].append([step, rt.mean_across_ranks(step_loss, run)])
            if step % cfg.eval_every == 0 or step == limit:
                val = evaluate()
            mfu = f" | mfu {flops * tok_s / (peak * run.world_size):.1%}" if peak else ""
            info = f"loss {history['train'][-1][1]:.4f} | val {val:.4f} | {tok_s:,.0f} tok/s{mfu}"
            bar.update(task, completed=step, info=info)

    if run.is_main:
        export(out_dir, history, title=f"{Path(cfg.data).name}: {cfg.n_layer} layers, width {cfg.n_embd}")
    run.barrier()
    return PretrainResult(
        out_dir=out_dir,
        step=step,
        best_step=best_step,
        best_val_loss=best_val,
        train_tokens_per_s=train_tokens / train_time if train_time else 0.0,
        wall_s=time.perf_counter() - started,
        history=history,
    )


def export(out_dir: Path, history: dict, title: str) -> None:
    """The best checkpoint becomes the run directory's Hugging Face model; curves go beside it."""
    best = out_dir / ckpt.CHECKPOINTS / "best"
    for item in best.iterdir():
        if item.is_file() and item.name != ckpt.STATE_FILE:
            shutil.copy2(item, out_dir / item.name)
    (out_dir / "history.json").write_text(json.dumps(history) + "\n")
    plot_loss_curves(history, out_dir / "loss_curves.png", title=title)
