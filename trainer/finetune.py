"""`trainer finetune`: any causal LM -- a run directory of `trainer pretrain` or a Hugging Face model --
fine-tuned on plain text or chat JSONL, in full or with a LoRA adapter (peft), by the trainer's core.

Plain text is cut into windows of max_seq_tokens tokens, every token a target. A chat gives one example
per window of whole turns, with only the assistant's replies as targets. The last val_fraction of the
examples is held out; its loss is measured before training and as training goes, and the best model by
it is what is kept, so a fine-tune that did not help shows it. The output is written atomically: a LoRA
adapter (adapter_config.json + adapter_model.safetensors, loadable by anyone's peft) or a whole model,
with the tokenizer and a finetune.json beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from trainer.core import distributed
from trainer.core.config import FinetuneConfig
from trainer.core.examples import file_examples, hold_out
from trainer.core.finetuning import FinetuneData, FinetuneResult, fine_tune
from trainer.core.loop import LoopHooks, LoopState
from trainer.core.models import add_lora, load_model, looks_like_path, training_dtype
from trainer.errors import ConfigError
from trainer.pretrain.checkpoint import replace_dir


def finetune(cfg: FinetuneConfig, progress: bool = True) -> FinetuneResult:
    placement = distributed.start(cfg.device)
    if placement.distributed:
        raise ConfigError("fine-tuning runs in one process; launch it without torchrun")
    loaded = load_model(cfg.model, device=str(placement.device), dtype=training_dtype(cfg.method, placement.device))
    max_tokens = min(cfg.max_seq_tokens, loaded.max_positions or cfg.max_seq_tokens)
    train, val = hold_out(file_examples(loaded.tokenizer, cfg.data, max_tokens, cfg.loss_on), cfg.val_fraction)
    distributed.seed_everything(cfg.seed)
    model = loaded.model
    if cfg.method == "lora":
        model = add_lora(model, cfg)
        # a local base model is recorded by absolute path, so the adapter loads from any directory
        model.peft_config["default"].base_model_name_or_path = _portable_name(cfg.model)

    out_dir = Path(cfg.out_dir).expanduser()
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    def keep_best(state: LoopState) -> None:
        model.save_pretrained(staging)

    result = fine_tune(
        model,
        FinetuneData(train, val, loaded.tokenizer.pad_token_id),
        cfg,
        placement,
        label="finetune",
        grad_accum=cfg.grad_accum,
        progress=progress,
        hooks=LoopHooks(keep_best=keep_best),
    )
    model.eval()
    loaded.tokenizer.save_pretrained(staging)
    record = {
        "base_model": _portable_name(cfg.model),
        "config": cfg.model_dump(),
        "data": {"path": str(cfg.data), "train_examples": len(train), "val_examples": len(val)},
        "steps": result.steps,
        "best_step": result.best_step,
        "val_loss_before": result.base_val_loss,
        "val_loss_after": result.best_val_loss,
    }
    (staging / "finetune.json").write_text(json.dumps(record, indent=2) + "\n")
    replace_dir(staging, out_dir)
    return result


def _portable_name(name: str) -> str:
    return str(Path(name).expanduser().resolve()) if looks_like_path(name) else name
