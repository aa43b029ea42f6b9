"""The LoRA fine-tune of one target, top to bottom: read the job, build the model with peft, train, keep the
adapter with the best validation loss.

AdamW over the adapter's weights only, linear warmup then cosine decay, gradient clipping, LoRA dropout,
evaluation every K steps with early stopping, a checkpoint every K steps that a later run with the same data
and settings resumes from, and a rich progress bar. Under ``torchrun`` or ``accelerate launch`` each process
trains on its share of every batch and DDP averages the gradients; the code is the same:

    torchrun --nproc_per_node 2 -m trainer.nightly.lora RUN_DIR/targets/community/job.json
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel as DDP

from brain.settings import FinetuneSettings
from trainer import runtime as rt
from trainer.errors import DataError
from trainer.nightly.clean import load_split
from trainer.nightly.data import IGNORE, Example, Renderer, chunks, collate, encode_all, token_losses
from trainer.nightly.files import read_json, write_json
from trainer.pretrain.checkpoint import replace_dir
from trainer.schedule import warmup_cosine

console = Console(stderr=True)


class CancelledError(RuntimeError):
    """The run was asked to stop (SIGTERM to the scheduler); nothing was promoted."""


@dataclass
class FinetuneJob:
    target: str
    model_path: str
    run_dir: str
    out_dir: str
    user: str | None
    system_prompts: dict[str, str]
    default_persona: str
    settings: dict[str, Any]
    # target folders of interrupted earlier runs: their checkpoint is resumed if data and settings match
    resume_dirs: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> FinetuneJob:
        return cls(**read_json(path))


@dataclass
class FinetuneResult:
    target: str
    adapter_dir: str
    best_step: int
    best_val_loss: float
    base_val_loss: float
    steps: int
    stopped_early: bool
    resumed_from: int | None
    train_examples: int
    val_examples: int
    processes: int = 1
    history: dict[str, list] = field(default_factory=dict)


def fingerprint(job: FinetuneJob, train: list[Example], val: list[Example]) -> str:
    """What a checkpoint must match to be resumed: the same model, settings and examples."""
    digest = hashlib.sha256()
    digest.update(json.dumps([Path(job.model_path).name, job.settings, job.user], sort_keys=True).encode())
    for example in train + val:
        digest.update(json.dumps([example.ids, example.labels]).encode())
    return digest.hexdigest()


def build_model(job: FinetuneJob, cfg: FinetuneSettings, device: torch.device) -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(job.model_path)
    base = AutoModelForCausalLM.from_pretrained(job.model_path, dtype=rt.pick_dtype(device)).to(device)
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, config), tokenizer


def epoch_batches(examples: list[Example], batch_size: int, seed: int) -> list[list[int]]:
    """One epoch's batches: a seeded shuffle, then examples of similar length side by side (within windows
    of 16 batches) so that little compute goes to padding, then the batches in a seeded order."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(examples), generator=generator).tolist()
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        ranked = sorted(order[start : start + window], key=lambda i: len(examples[i].ids))
        batches += [ranked[i : i + batch_size] for i in range(0, len(ranked), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def batch_for_step(step: int, examples: list[Example], cfg: FinetuneSettings, runtime: rt.Runtime) -> list[Example]:
    """This process's share of the step's batch."""
    per_epoch = math.ceil(len(examples) / cfg.batch_size)
    epoch, index = divmod(step, per_epoch)
    chunk = epoch_batches(examples, cfg.batch_size, cfg.seed + epoch)[index]
    mine = chunk[runtime.rank :: runtime.world_size] or chunk[runtime.rank % len(chunk) :][:1]
    return [examples[i] for i in mine]


@torch.no_grad()
def validation_loss(model: Any, examples: list[Example], cfg: FinetuneSettings, runtime: rt.Runtime, pad: int) -> float:
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=runtime.device)
    mine = sorted(examples[runtime.rank :: runtime.world_size], key=lambda e: len(e.ids))  # less padding
    for part in chunks(mine, cfg.batch_size, cfg.max_batch_tokens):
        batch = {k: v.to(runtime.device) for k, v in collate(part, pad).items()}
        with runtime.autocast():
            loss, count = token_losses(model, batch)
        total += torch.stack([loss.double(), count.double()])
    if runtime.distributed:
        torch.distributed.all_reduce(total)
    model.train()
    return (total[0] / total[1].clamp(min=1)).item()


def train_step(ddp: Any, examples: list[Example], cfg: FinetuneSettings, runtime: rt.Runtime, pad: int) -> float:
    """Forward and backward over this process's share of a batch, in pieces within the token budget; the
    gradient is that of the mean loss over the labelled tokens, as if the share went through at once."""
    parts = chunks(sorted(examples, key=lambda e: len(e.ids)), cfg.batch_size, cfg.max_batch_tokens)
    labelled = sum(sum(label != IGNORE for label in e.labels[1:]) for e in examples)
    total = 0.0
    for index, part in enumerate(parts):
        batch = {k: v.to(runtime.device) for k, v in collate(part, pad).items()}
        last = index == len(parts) - 1
        # DDP averages gradients across processes once, on the last piece
        sync = contextlib.nullcontext() if last or not runtime.distributed else ddp.no_sync()
        with sync:
            with runtime.autocast():
                loss_sum, _ = token_losses(ddp, batch)
            (loss_sum / max(labelled, 1)).backward()
        total += loss_sum.item()
    return total / max(labelled, 1)


def save_adapter(model: Any, out: Path) -> None:
    """Write the adapter beside ``out``, then swap it in: ``out`` never holds half an adapter."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    replace_dir(tmp, out)


@dataclass
class TrainState:
    step: int = 0
    best_val: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    history: dict[str, list] = field(default_factory=lambda: {"train": [], "val": []})


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(folder: Path, fingerprint: str, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint in ``folder`` if it was written for the same model, settings and examples."""
    path = folder / "checkpoint" / "state.pt"
    if not path.is_file():
        return None
    saved = torch.load(path, map_location=device, weights_only=True)
    return saved if saved.get("fingerprint") == fingerprint else None


def finetune(job: FinetuneJob, stop: threading.Event | None = None) -> FinetuneResult:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    runtime = rt.start("auto")
    cfg = FinetuneSettings(**job.settings)
    rt.seed_everything(cfg.seed)
    out = Path(job.out_dir)
    model, tokenizer = build_model(job, cfg, runtime.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    renderer = Renderer(
        tokenizer, job.system_prompts, job.default_persona, loss_on=cfg.loss_on, max_tokens=cfg.max_seq_tokens
    )
    run_dir = Path(job.run_dir)
    train = encode_all(renderer, load_split(run_dir, "train", job.user))
    val = encode_all(renderer, load_split(run_dir, "val", job.user))
    if not train or not val:
        raise DataError(f"{job.target}: {len(train)} training and {len(val)} validation examples; need one of each")
    job.fingerprint = fingerprint(job, train, val)

    total = math.ceil(len(train) / cfg.batch_size) * cfg.epochs
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warmup = min(cfg.warmup_steps, total - 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup, total, cfg.min_lr_ratio)
    )

    checkpoint_path = out / "checkpoint" / "state.pt"
    state, resumed_from = TrainState(), None
    for folder in [out, *map(Path, job.resume_dirs)]:
        saved = load_checkpoint(folder, job.fingerprint, runtime.device)
        if saved is not None:
            set_peft_model_state_dict(model, saved["adapter"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            rt.set_rng_state(saved["rng"])
            state = TrainState(**saved["state"])
            resumed_from = state.step
            if folder != out and (folder / "adapter").is_dir() and runtime.is_main:
                shutil.copytree(folder / "adapter", out / "adapter", dirs_exist_ok=True)  # the best so far
            break

    ddp = DDP(model) if runtime.distributed else model
    model.train()
    if resumed_from is None:
        state.best_val = validation_loss(ddp, val, cfg, runtime, pad)
        state.history["val"].append({"step": 0, "loss": state.best_val})
        if runtime.is_main:
            save_adapter(model, out / "adapter")  # the untrained adapter is the base model: the floor
    base_val = state.history["val"][0]["loss"]
    stopped_early = False
    progress = rt.progress_bar(job.target, console, enabled=runtime.is_main)
    with progress:
        task = progress.add_task("fine-tune", total=total, completed=state.step, info="")
        while state.step < total:
            if stop is not None and stop.is_set():
                raise CancelledError(f"{job.target}: stopped at step {state.step} of {total}")
            loss = train_step(ddp, batch_for_step(state.step, train, cfg, runtime), cfg, runtime, pad)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            train_loss = rt.mean_across_ranks(loss, runtime)
            state.history["train"].append({"step": state.step, "loss": train_loss, "lr": scheduler.get_last_lr()[0]})

            if state.step % cfg.eval_every == 0 or state.step == total:
                val_loss = validation_loss(ddp, val, cfg, runtime, pad)
                state.history["val"].append({"step": state.step, "loss": val_loss})
                if val_loss < state.best_val:
                    state.best_val, state.best_step, state.bad_evals = val_loss, state.step, 0
                    if runtime.is_main:
                        save_adapter(model, out / "adapter")
                else:
                    state.bad_evals += 1
                stopped_early = state.bad_evals >= cfg.patience and state.step < total
            if runtime.is_main and (state.step % cfg.checkpoint_every == 0 or stopped_early or state.step == total):
                save_checkpoint(checkpoint_path, {
                    "fingerprint": job.fingerprint, "adapter": get_peft_model_state_dict(model),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rt.rng_state(), "state": asdict(state),
                })  # fmt: skip
            progress.update(task, completed=state.step, info=f"loss {train_loss:.3f}  best val {state.best_val:.3f}")
            if stopped_early:
                break
    runtime.barrier()

    result = FinetuneResult(
        target=job.target,
        adapter_dir=str(out / "adapter"),
        best_step=state.best_step,
        best_val_loss=state.best_val,
        base_val_loss=base_val,
        steps=state.step,
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        train_examples=len(train),
        val_examples=len(val),
        processes=runtime.world_size,
        history=state.history,
    )
    if runtime.is_main:
        write_json(out / "result.json", asdict(result))
    rt.stop(runtime)
    return result


def load_result(out_dir: Path) -> FinetuneResult:
    return FinetuneResult(**read_json(out_dir / "result.json"))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m trainer.nightly.lora JOB.json", file=sys.stderr)
        return 2
    finetune(FinetuneJob.load(Path(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
