"""Fine-tuning any causal LM -- a run directory of `trainer pretrain` or a Hugging Face model -- on
plain text or chat JSONL, in full or with a LoRA adapter (peft).

Plain text is cut into windows of max_length tokens, every token a target. A chat is one example,
with only the assistant's replies as targets. The last val_fraction of the examples is held out, and
its loss is measured before and after, so a fine-tune that did not help shows it.
The output is written atomically: a LoRA adapter (adapter_config.json + adapter_model.safetensors,
loadable by anyone's peft) or a whole model, with the tokenizer and a finetune.json beside it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from rich.console import Console

from trainer import runtime as rt
from trainer.chats import IGNORE, chat_example, is_chat_file, read_chats
from trainer.errors import ConfigError, DataError
from trainer.model_io import LoadedModel, load_model, looks_like_path
from trainer.pretrain import data as D
from trainer.pretrain.checkpoint import replace_dir
from trainer.schedule import warmup_cosine

console = Console(stderr=True)
Example = tuple[list[int], list[int]]


@dataclass
class FinetuneConfig:
    model: str
    data: str
    out_dir: str = "runs/finetune"
    method: Literal["lora", "full"] = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    lr: float | None = None  # 2e-4 for LoRA, 5e-5 for a full fine-tune
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_length: int = 512
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if self.method not in ("lora", "full"):
            raise ConfigError(f"unknown fine-tuning method {self.method!r}: use lora or full")
        for name in ("lora_r", "epochs", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), not {self.val_fraction}")

    @property
    def peak_lr(self) -> float:
        return self.lr or (2e-4 if self.method == "lora" else 5e-5)


@dataclass
class FinetuneResult:
    out_dir: Path
    steps: int
    train_examples: int
    val_examples: int
    val_loss_before: float
    val_loss_after: float
    wall_s: float


def load_examples(tokenizer, data: str | Path, max_length: int) -> list[Example]:
    """Training examples from chat JSONL or plain text, checked for emptiness and binary content."""
    if is_chat_file(data):
        if not getattr(tokenizer, "chat_template", None):
            raise DataError(f"{data} holds chats, but the model's tokenizer has no chat template")
        examples = [e for chat in read_chats(data) if (e := chat_example(tokenizer, chat, max_length))]
        if not examples:
            raise DataError(f"{data} has no conversation with an assistant reply to learn from")
        return examples
    ids = tokenizer(D.load_clean_text(data), add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) < 2 * max_length:
        raise DataError(
            f"{data} holds {len(ids)} tokens: too little for one training and one validation window "
            f"of max_length {max_length}; use a shorter --max-length or more data"
        )
    return [
        (ids[i : i + max_length], ids[i : i + max_length])
        for i in range(0, len(ids) - 1, max_length)
        if len(ids[i : i + max_length]) > 1
    ]


def split_examples(examples: list[Example], val_fraction: float) -> tuple[list[Example], list[Example]]:
    if len(examples) < 2:
        raise DataError("fine-tuning needs at least two examples: one to train on, one to validate")
    n_val = min(len(examples) - 1, max(1, round(len(examples) * val_fraction)))
    return examples[:-n_val], examples[-n_val:]


def collate(batch: list[Example], pad_id: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (x, y) in enumerate(batch):
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def batch_loss(model, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean next-token loss over the labelled positions, and how many there were."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    targets = labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE)
    return loss, int((targets != IGNORE).sum())


@torch.no_grad()
def validation_loss(loaded: LoadedModel, examples: list[Example], batch_size: int, run: rt.Runtime) -> float:
    loaded.model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        ids, labels, mask = collate(examples[i : i + batch_size], loaded.tokenizer.pad_token_id, run.device)
        with run.autocast():
            loss, n = batch_loss(loaded.model, ids, labels, mask)
        total, count = total + loss.item() * n, count + n
    return total / max(1, count)


def finetune(cfg: FinetuneConfig, progress: bool = True) -> FinetuneResult:
    cfg.validate()
    started = time.perf_counter()
    run = rt.start(cfg.device)
    if run.distributed:
        raise ConfigError("fine-tuning runs in one process; launch it without torchrun")
    # a full fine-tune keeps fp32 master weights under autocast; LoRA trains fp32 adapters on a bf16 base
    dtype = torch.float32 if cfg.method == "full" or run.device.type == "cpu" else rt.pick_dtype(run.device)
    loaded = load_model(cfg.model, device=str(run.device), dtype=dtype)
    examples = load_examples(loaded.tokenizer, cfg.data, min(cfg.max_length, loaded.max_positions or cfg.max_length))
    train, val = split_examples(examples, cfg.val_fraction)
    rt.seed_everything(cfg.seed)
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            task_type="CAUSAL_LM",
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.target_modules,
        )
        loaded.model = get_peft_model(loaded.model, lora)
    before = validation_loss(loaded, val, cfg.batch_size, run)
    steps = train_loop(loaded, train, cfg, run, progress)
    after = validation_loss(loaded, val, cfg.batch_size, run)
    out_dir = Path(cfg.out_dir).expanduser()
    info = {
        "base_model": _portable_name(cfg.model),
        "config": asdict(cfg),
        "data": {"path": str(cfg.data), "train_examples": len(train), "val_examples": len(val)},
        "steps": steps,
        "val_loss_before": before,
        "val_loss_after": after,
    }
    save(loaded, out_dir, info, cfg)
    return FinetuneResult(out_dir, steps, len(train), len(val), before, after, time.perf_counter() - started)


def train_loop(loaded: LoadedModel, train: list[Example], cfg: FinetuneConfig, run: rt.Runtime, progress: bool) -> int:
    model = loaded.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(train) / (cfg.batch_size * cfg.grad_accum))
    total = cfg.max_steps or per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total, 0.1))
    order = torch.Generator().manual_seed(cfg.seed)
    batches: list[list[Example]] = []
    bar = rt.progress_bar("finetune", console, enabled=progress)
    with bar:
        task = bar.add_task("finetune", total=total, info="")
        for step in range(total):
            t0, step_loss, tokens = time.perf_counter(), 0.0, 0
            for _ in range(cfg.grad_accum):
                if not batches:  # a new epoch, in a new order
                    perm = torch.randperm(len(train), generator=order).tolist()
                    batches = [
                        [train[i] for i in perm[j : j + cfg.batch_size]] for j in range(0, len(perm), cfg.batch_size)
                    ]
                ids, labels, mask = collate(batches.pop(0), loaded.tokenizer.pad_token_id, run.device)
                with run.autocast():
                    loss, n = batch_loss(model, ids, labels, mask)
                (loss / cfg.grad_accum).backward()
                step_loss, tokens = step_loss + loss.item() / cfg.grad_accum, tokens + int(mask.sum())
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            rate = tokens / (time.perf_counter() - t0)
            bar.update(task, completed=step + 1, info=f"loss {step_loss:.4f} | {rate:,.0f} tok/s")
    model.eval()
    return total


def save(loaded: LoadedModel, out_dir: Path, info: dict, cfg: FinetuneConfig) -> None:
    """An adapter or a whole model, with its tokenizer, renamed into place when complete."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    model = loaded.model
    if cfg.method == "lora":
        model.peft_config["default"].base_model_name_or_path = info["base_model"]
    model.save_pretrained(tmp)
    loaded.tokenizer.save_pretrained(tmp)
    (tmp / "finetune.json").write_text(json.dumps(info, indent=2) + "\n")
    replace_dir(tmp, out_dir)


def _portable_name(name: str) -> str:
    """A local base model is recorded by absolute path, so the adapter loads from any directory."""
    return str(Path(name).expanduser().resolve()) if looks_like_path(name) else name
