"""Checkpoints that describe themselves, and the final Hugging Face directory.

A checkpoint is a directory: the model in Hugging Face's GPT-2 format (config.json, model.safetensors,
generation_config.json; model.py converts the weights both ways), the tokenizer files, `checkpoint.json`
(step, losses, the training config, the tokenizer and the data it was trained on, the loss history) and
`trainer_state.pt` (optimizer, scheduler, every RNG and the data position) -- all that resuming needs to
take the exact next step.
Writes go to a temporary directory that is renamed into place, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoTokenizer, GenerationConfig, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from trainer.errors import CheckpointError
from trainer.pretrain.model import GPT

META_FILE = "checkpoint.json"
STATE_FILE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"

# a progress bar per checkpoint write is noise among the training progress bar
hf_logging.disable_progress_bar()


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]
    model: GPT
    tokenizer: PreTrainedTokenizerFast
    state: dict[str, Any]


def save_checkpoint(
    path: Path,
    model: GPT,
    tokenizer: PreTrainedTokenizerFast,
    generation: GenerationConfig,
    meta: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint (or, with no trainer state, a plain model directory) atomically."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_hf(tmp, tokenizer)
    generation.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if state is not None:
        torch.save(state, tmp / STATE_FILE)
    replace_dir(tmp, path)


def replace_dir(new: Path, target: Path) -> None:
    """Swap `new` in for `target` with renames only; the old copy is removed once the new one is there."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory whose latest checkpoint is meant."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} does not exist")
    if (path / CHECKPOINTS / "last").is_dir() and not (path / STATE_FILE).exists():
        path = path / CHECKPOINTS / "last"
    for name in (META_FILE, STATE_FILE, "config.json", "model.safetensors"):
        if not (path / name).is_file():
            raise CheckpointError(f"{path} is not a resumable checkpoint: {name} is missing")
    return path


def read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / META_FILE).read_text())
        if not isinstance(meta, dict) or "step" not in meta or "train_config" not in meta:
            raise ValueError(f"{META_FILE} lacks the step or the training config")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"the checkpoint {path} is corrupt: {META_FILE} is unreadable ({e})") from None
    return meta


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load every part of a checkpoint, turning any unreadable part into one clear error."""
    path = resolve(path)
    meta = read_meta(path)
    from transformers import GPT2LMHeadModel  # seconds to import: only a resumed run needs it

    try:
        hf_model = GPT2LMHeadModel.from_pretrained(path)
    except Exception as e:  # safetensors and transformers raise many kinds for a damaged file
        raise CheckpointError(f"the checkpoint {path} is corrupt: its model does not load ({e})") from None
    model = GPT.from_hf(hf_model)
    try:
        tokenizer = cast(PreTrainedTokenizerFast, AutoTokenizer.from_pretrained(path))  # written by train_tokenizer
    except Exception as e:
        raise CheckpointError(f"the checkpoint {path} is corrupt: its tokenizer does not load ({e})") from None
    try:
        state = torch.load(path / STATE_FILE, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"the checkpoint {path} is corrupt: {STATE_FILE} does not load ({e})") from None
    return Checkpoint(path=path, meta=meta, model=model, tokenizer=tokenizer, state=state)
