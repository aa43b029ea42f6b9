"""The LoRA fine-tune of one target, top to bottom: read the job, build the model with peft, train with the
core's fine-tune, keep the adapter with the best validation loss.

A checkpoint every K steps lets a later run with the same data and settings resume. Under ``torchrun`` or
``accelerate launch`` (see worker.py) each process trains on its share of every batch and DDP sums the
gradients; the code is the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from brain.settings import FinetuneSettings
from trainer.core import distributed
from trainer.core.examples import ChatRenderer, Example
from trainer.core.finetuning import FinetuneResult, fine_tune
from trainer.core.loop import LoopState, Snapshot
from trainer.core.models import add_lora, load_model
from trainer.errors import DataError
from trainer.nightly.clean import load_split
from trainer.nightly.conversations import Personas, encode_all
from trainer.nightly.files import read_json, write_json
from trainer.pretrain.checkpoint import replace_dir

# what a checkpoint's layout is; one of another layout is not resumed
CHECKPOINT_FORMAT = 2
RESULT = "result.json"


class FinetuneJob(BaseModel):
    """One target's fine-tune, as the nightly run hands it to the process that trains (job.json)."""

    target: str
    model_path: str
    run_dir: str
    out_dir: str
    user: str | None
    system_prompts: dict[str, str]
    default_persona: str
    settings: FinetuneSettings
    # target folders of interrupted earlier runs: their checkpoint is resumed if data and settings match
    resume_dirs: list[str] = Field(default_factory=list)

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump())

    @classmethod
    def load(cls, path: Path) -> FinetuneJob:
        return cls.model_validate(read_json(path))


def fingerprint(job: FinetuneJob, train: list[Example], val: list[Example]) -> str:
    """What a checkpoint must match to be resumed: its layout, the same model, settings and examples."""
    digest = hashlib.sha256()
    identity = [CHECKPOINT_FORMAT, Path(job.model_path).name, job.settings.model_dump(), job.user]
    digest.update(json.dumps(identity, sort_keys=True).encode())
    for example in train + val:
        digest.update(json.dumps([example.ids, example.labels]).encode())
    return digest.hexdigest()


def save_adapter(model: Any, out: Path) -> None:
    """Write the adapter beside ``out``, then swap it in: ``out`` never holds half an adapter."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    replace_dir(tmp, out)


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

    placement = distributed.start("auto")
    cfg = job.settings
    distributed.seed_everything(cfg.seed)
    out = Path(job.out_dir)
    loaded = load_model(job.model_path, device=str(placement.device))
    model = add_lora(loaded.model, cfg)
    renderer = ChatRenderer(loaded.tokenizer, loss_on=cfg.loss_on, max_tokens=cfg.max_seq_tokens)
    personas = Personas(job.system_prompts, job.default_persona)
    run_dir = Path(job.run_dir)
    train = encode_all(renderer, personas, load_split(run_dir, "train", job.user))
    val = encode_all(renderer, personas, load_split(run_dir, "val", job.user))
    if not train or not val:
        raise DataError(f"{job.target}: {len(train)} training and {len(val)} validation examples; need one of each")
    digest = fingerprint(job, train, val)

    resume = None
    for folder in [out, *map(Path, job.resume_dirs)]:
        saved = load_checkpoint(folder, digest, placement.device)
        if saved is not None:
            set_peft_model_state_dict(model, saved["adapter"])
            resume = Snapshot(
                state=LoopState(**saved["state"]),
                optimizer=saved["optimizer"],
                scheduler=saved["scheduler"],
                rng=saved["rng"],
                data=saved["data"],
            )
            if folder != out and (folder / "adapter").is_dir() and placement.is_main:
                shutil.copytree(folder / "adapter", out / "adapter", dirs_exist_ok=True)  # the best so far
            break

    def keep_best(state: LoopState) -> None:
        if placement.is_main:  # at step 0, the untrained adapter: the base model is the floor
            save_adapter(model, out / "adapter")

    def checkpoint(snapshot: Snapshot) -> None:
        if placement.is_main:
            save_checkpoint(out / "checkpoint" / "state.pt", {
                "fingerprint": digest, "adapter": get_peft_model_state_dict(model),
                "optimizer": snapshot.optimizer, "scheduler": snapshot.scheduler,
                "rng": snapshot.rng, "state": asdict(snapshot.state), "data": snapshot.data,
            })  # fmt: skip

    result = fine_tune(
        model,
        loaded.tokenizer.pad_token_id,
        train,
        val,
        cfg,
        placement,
        label=job.target,
        keep_best=keep_best,
        save_checkpoint=checkpoint,
        resume=resume,
        stop=stop,
    )
    if placement.is_main:
        write_json(out / RESULT, result.model_dump())
    distributed.stop(placement)
    return result


def load_result(out_dir: Path) -> FinetuneResult:
    return FinetuneResult.model_validate(read_json(out_dir / RESULT))
