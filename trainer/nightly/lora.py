"""The LoRA fine-tune of one target, top to bottom: read the job, build the model with peft, train with the
core's fine-tune, keep the adapter with the best validation loss. With ratings, the reference model (what
serves the target now, or the base) scores every rated reply first; then the fresh adapter learns from the
logs, the liked replies and the preference objectives together (see ratings.py and core/objectives.py).

A checkpoint every K steps lets a later run with the same data and settings resume. Under ``torchrun`` or
``accelerate launch`` (see worker.py) each process trains on its share of every batch and DDP sums the
gradients; the code is the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from brain.engine.model_loading import eos_token_ids
from trainer.core import distributed
from trainer.core.distributed import Placement
from trainer.core.evaluation import fill_reference
from trainer.core.examples import ChatRenderer, Example, PairExample
from trainer.core.finetuning import (
    Batching,
    FinetuneData,
    FinetuneResult,
    PreferenceData,
    ProseBound,
    StepGuard,
    fine_tune,
    prose_loss,
)
from trainer.core.loop import LoopHooks, LoopState, Snapshot
from trainer.core.models import ModelWithTokenizer, add_lora, load_model
from trainer.errors import DataError
from trainer.nightly.clean import load_split
from trainer.nightly.conversations import Personas, encode_all
from trainer.nightly.files import read_json, read_jsonl, write_json
from trainer.nightly.guard import Answering, QuestionsKept, guard_set, load_questions
from trainer.nightly.ratings import (
    PreferenceExamples,
    disliked_in_run,
    load_ratings,
    preference_examples,
    without_replies,
)
from trainer.nightly.retain import RETAIN_MAX_NEW_TOKENS, general_questions, retain_examples
from trainer.nightly.reward import OnPolicyPair
from trainer.pretrain.checkpoint import replace_dir
from trainer.settings import EvaluationSettings, FinetuneSettings, PreferenceSettings

# what a checkpoint's layout is; one of another layout is not resumed
CHECKPOINT_FORMAT = 3
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
    # what is learned from ratings (None: nothing), and the adapter the preference objectives take as their
    # reference (None: the base model)
    preference: PreferenceSettings | None = None
    reference_dir: str | None = None
    # the night's best-of-n pairs of its policy's own replies (reward.py; run.py's _policy), learned as DPO pairs
    onpolicy_pairs: str | None = None
    # the target's own live adapter, continued instead of a fresh one (settings.start_from), and its name
    start_dir: str | None = None
    start_name: str | None = None
    # the gate's general guard (its prose, its bound, its questions), which every step kept must hold; None: any
    guard: EvaluationSettings | None = None
    # on a CPU, the model in bf16 (its adapter float32, steps under autocast): where the brain serves it so (run.py)
    cpu_bf16: bool = False

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump())

    @classmethod
    def load(cls, path: Path) -> FinetuneJob:
        return cls.model_validate(read_json(path))


def fingerprint(
    job: FinetuneJob, train: list[Example], val: list[Example], preference: PreferenceData | None = None
) -> str:
    """What a checkpoint must match to be resumed: its layout, the same model, settings and examples (and
    the same preference data, scored by the same reference)."""
    digest = hashlib.sha256()
    settings = job.preference.model_dump() if job.preference else None
    identity = [CHECKPOINT_FORMAT, Path(job.model_path).name, job.settings.model_dump(), job.user, settings]
    identity += [job.start_name, job.guard.model_dump() if job.guard else None, job.cpu_bf16]
    digest.update(json.dumps(identity, sort_keys=True).encode())
    for example in train + val:
        digest.update(json.dumps([example.ids, example.labels]).encode())
    if preference:
        for pair in preference.pairs + preference.val_pairs:
            pair_rows = [pair.chosen.ids, pair.chosen.labels, pair.rejected.ids, pair.rejected.labels]
            digest.update(json.dumps([pair_rows, round(pair.ref_chosen, 3), round(pair.ref_rejected, 3)]).encode())
        for rated in preference.rated + preference.val_rated:
            rated_rows = [rated.reply.ids, rated.reply.labels, rated.mismatched.ids, rated.desirable]
            digest.update(json.dumps([rated_rows, round(rated.ref_reply, 3), round(rated.ref_mismatched, 3)]).encode())
    return digest.hexdigest()


def preference_data(
    job: FinetuneJob, loaded: ModelWithTokenizer, renderer: ChatRenderer
) -> tuple[PreferenceData | None, PreferenceExamples, PreferenceExamples]:
    """The target's rated training and validation turns as preference data, scored by the reference model;
    None when no rated reply is there to learn from. Also the examples themselves (their liked replies)."""
    assert job.preference is not None
    run_dir = Path(job.run_dir)
    settings = job.preference
    parts = [
        preference_examples(renderer, load_ratings(run_dir, split, job.user), settings.max_pairs_per_prompt)
        for split in ("train", "val")
    ]
    train, val = parts
    if job.onpolicy_pairs:
        pairs, chosen_liked = onpolicy_examples(renderer, Path(job.onpolicy_pairs))
        train.pairs += pairs
        train.liked += chosen_liked
    if not (train.pairs or train.rated):
        return None, train, val
    data = PreferenceData(settings, train.pairs, train.rated, val.pairs, val.rated)
    cfg = job.settings
    with reference(loaded, job.reference_dir) as model:
        fill_reference(
            model,
            data.pairs + data.val_pairs,
            data.rated + data.val_rated,
            batch_size=cfg.batch_size,
            max_batch_tokens=cfg.max_batch_tokens,
            pad_id=loaded.tokenizer.pad_token_id,
            device=loaded.device,
        )
    return data, train, val


def onpolicy_examples(renderer: ChatRenderer, path: Path) -> tuple[list[PairExample], list[Example]]:
    """The best-of-n pairs written for this job, as DPO pairs (those that fit the context), and their chosen
    replies the reward model reads as liked, for the next-token part."""
    pairs, liked = [], []
    for row in read_jsonl(path) if path.is_file() else []:
        pair = OnPolicyPair.model_validate(row)
        chosen = renderer.completion_parts(pair.prompt, pair.chosen)
        rejected = renderer.completion_parts(pair.prompt, pair.rejected)
        if chosen is not None and rejected is not None:
            pairs.append(PairExample(renderer.completion(*chosen), renderer.completion(*rejected)))
            if pair.chosen_liked:
                liked.append(renderer.completion(*chosen))
    return pairs, liked


@contextlib.contextmanager
def reference(loaded: ModelWithTokenizer, adapter_dir: str | None) -> Iterator[Any]:
    """The reference model: the base, or the base with ``adapter_dir`` attached (and taken off after)."""
    if adapter_dir is None:
        yield loaded.model
        return
    from peft import PeftModel

    attached = PeftModel.from_pretrained(loaded.model, adapter_dir)
    try:
        yield attached
    finally:
        loaded.model = attached.unload()


def save_adapter(model: Any, out: Path) -> None:
    """Write the adapter beside ``out``, then swap it in: ``out`` never holds half an adapter."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    replace_dir(tmp, out)


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_resume_state(folder: Path, fingerprint: str, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint in ``folder`` if it was written for the same model, settings and examples."""
    path = folder / "checkpoint" / "state.pt"
    if not path.is_file():
        return None
    saved = torch.load(path, map_location=device, weights_only=True)
    return saved if saved.get("fingerprint") == fingerprint else None


def finetune(job: FinetuneJob, stop: threading.Event | None = None) -> FinetuneResult:
    """Train the job's adapter; its best adapter, checkpoint and result go to ``job.out_dir``."""
    placement = distributed.start("auto", cpu_bf16=job.cpu_bf16)
    cfg = job.settings
    distributed.seed_everything(cfg.seed)
    out = Path(job.out_dir)
    loaded = load_model(job.model_path, device=str(placement.device), cpu_bf16=job.cpu_bf16)
    data = training_data(job, loaded)  # with ratings, scored by the reference before the adapter is put on
    model = add_lora(loaded.model, cfg)
    fresh_because = continue_adapter(model, job.start_dir) if job.start_dir else ""
    if job.guard is not None:
        data.guards = step_guards(model, loaded.tokenizer, job, Batching(cfg, 1, data.pad_id, placement))
    digest = fingerprint(job, data.train, data.val, data.preference)
    resume = resume_snapshot(job, model, digest, placement)
    hooks = adapter_keeper(model, out, digest, placement, stop)
    result = fine_tune(model, data, cfg, placement, label=job.target, hooks=hooks, resume=resume)
    if job.start_dir:
        result.continued_from = None if fresh_because else job.start_name
        result.fresh_because = fresh_because
    if placement.is_main:
        write_json(out / RESULT, result.model_dump())
    distributed.stop(placement)
    return result


def step_guards(model: Any, tokenizer: Any, job: FinetuneJob, batching: Batching) -> list[StepGuard]:
    """The gate's general guard as the fine-tune keeps it: the prose, with the base model's loss on it, and the
    questions the base model answers right (the adapter switched off for both), measured as the gate will."""
    assert job.guard is not None
    renderer = ChatRenderer(tokenizer, loss_on=job.settings.loss_on, max_tokens=job.settings.max_seq_tokens)
    system = Personas(job.system_prompts, job.default_persona).system(job.default_persona)[0]["content"]
    guard = guard_set(renderer, system, job.guard.prose_file, job.guard.questions_file)
    eos = sorted(eos_token_ids(model, tokenizer))
    answering = Answering(tokenizer, eos, job.guard.batch_size, job.guard.question_max_new_tokens)
    with model.disable_adapter():
        prose = ProseBound(guard.prose, prose_loss(model, guard.prose, batching), job.guard.general_bound)
        questions = QuestionsKept.of_base(model, guard, answering, job.guard.questions_may_lose)
    return [prose, questions]


def continue_adapter(model: Any, start_dir: str) -> str:
    """Put the weights of the adapter in ``start_dir`` into ``model``'s fresh adapter, so that the night goes on
    from it; "" when done, else why not (an adapter of another rank, scale or set of modules: the fresh one
    stays)."""
    from peft import get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict

    config = read_json(Path(start_dir) / "adapter_config.json")
    mine = model.peft_config["default"]
    if (config.get("r"), config.get("lora_alpha")) != (mine.r, mine.lora_alpha):
        shape = f"rank {config.get('r')} and alpha {config.get('lora_alpha')}"
        return f"the live adapter has {shape}, not rank {mine.r} and alpha {mine.lora_alpha}"
    saved = load_peft_weights(start_dir, device="cpu")
    fresh = get_peft_model_state_dict(model)
    shapes = {key: tuple(value.shape) for key, value in saved.items()}
    if shapes != {key: tuple(value.shape) for key, value in fresh.items()}:
        return "the live adapter adapts other modules than the settings name"
    set_peft_model_state_dict(model, saved)
    return ""


def training_data(job: FinetuneJob, loaded: ModelWithTokenizer) -> FinetuneData:
    """The target's examples (its logs; with ratings, less the replies members disliked and plus those they
    liked) and its preference data."""
    cfg = job.settings
    renderer = ChatRenderer(loaded.tokenizer, loss_on=cfg.loss_on, max_tokens=cfg.max_seq_tokens)
    personas = Personas(job.system_prompts, job.default_persona)
    run_dir = Path(job.run_dir)
    train_convs, val_convs = load_split(run_dir, "train", job.user), load_split(run_dir, "val", job.user)
    preference = None
    if job.preference is not None and job.preference.enabled:
        # what members disliked is not imitated; what they liked is learned once more
        disliked = disliked_in_run(run_dir, job.user)
        train_convs, val_convs = without_replies(train_convs, disliked), without_replies(val_convs, disliked)
        preference, liked_train, liked_val = preference_data(job, loaded, renderer)
    train = encode_all(renderer, personas, train_convs)
    val = encode_all(renderer, personas, val_convs)
    if preference is not None:
        train, val = train + liked_train.liked, val + liked_val.liked
    # when likes are rare, members' ratings are what there is to learn from and to validate on: a night with a
    # handful of liked replies (all of them in training) still trains on its ratings
    rated_val = preference is not None and bool(preference.val_pairs or preference.val_rated)
    if not (train or preference) or not (val or rated_val):
        raise DataError(
            f"{job.target}: {len(train)} training and {len(val)} validation examples and no rated replies in their"
            " place; need one of each"
        )
    data = FinetuneData(train, val, loaded.tokenizer.pad_token_id, preference, retain_weight=cfg.retain_weight)
    if cfg.retain_questions and cfg.retain_weight:
        data.retain = base_answers(job, loaded, renderer, personas)
    return data


def base_answers(
    job: FinetuneJob, loaded: ModelWithTokenizer, renderer: ChatRenderer, personas: Personas
) -> list[Example]:
    """The base model's own answers to general questions under the default persona, to be retained (retain.py);
    ``loaded.model`` must not carry an adapter yet."""
    cfg = job.settings
    guard = load_questions(job.guard.questions_file if job.guard else "")
    system = personas.system(job.default_persona)[0]["content"]
    questions = general_questions(cfg.retain_questions, cfg.seed, guard)
    eos = sorted(eos_token_ids(loaded.model, loaded.tokenizer))
    return retain_examples(
        loaded.model, loaded.tokenizer, renderer, system, questions, guard, eos_token_ids=eos,
        batch_size=cfg.batch_size, max_new_tokens=RETAIN_MAX_NEW_TOKENS, device=loaded.device,
    )  # fmt: skip


def resume_snapshot(job: FinetuneJob, model: Any, digest: str, placement: Placement) -> Snapshot | None:
    """The checkpoint of this job's or an interrupted earlier run's, if one matches ``digest``: its adapter
    weights are put into ``model`` (and its best adapter so far copied over), the rest returned for the loop."""
    from peft import set_peft_model_state_dict

    out = Path(job.out_dir)
    for folder in [out, *map(Path, job.resume_dirs)]:
        saved = load_resume_state(folder, digest, placement.device)
        if saved is None:
            continue
        set_peft_model_state_dict(model, saved["adapter"])
        if folder != out and (folder / "adapter").is_dir() and placement.is_main:
            shutil.copytree(folder / "adapter", out / "adapter", dirs_exist_ok=True)  # the best so far
        state = saved["state"]
        state.setdefault("kept_val", state["best_val"])  # a checkpoint from before kept steps had their own score
        return Snapshot(
            state=LoopState(**state),
            optimizer=saved["optimizer"],
            scheduler=saved["scheduler"],
            rng=saved["rng"],
            data=saved["data"],
        )
    return None


def adapter_keeper(model: Any, out: Path, digest: str, placement: Placement, stop: threading.Event | None) -> LoopHooks:
    """Writes, on the main process, the best adapter so far (``out/adapter``) and the checkpoint to resume from
    (``out/checkpoint``, with ``digest``)."""
    from peft import get_peft_model_state_dict

    def keep_best(state: LoopState) -> None:
        if placement.is_main:  # at step 0, the untrained adapter: the base model is the floor
            save_adapter(model, out / "adapter")

    def checkpoint(snapshot: Snapshot) -> None:
        if placement.is_main:
            save_resume_state(out / "checkpoint" / "state.pt", {
                "fingerprint": digest, "adapter": get_peft_model_state_dict(model),
                "optimizer": snapshot.optimizer, "scheduler": snapshot.scheduler,
                "rng": snapshot.rng, "state": asdict(snapshot.state), "data": snapshot.data,
            })  # fmt: skip

    return LoopHooks(keep_best=keep_best, save_checkpoint=checkpoint, stop=stop)


def load_result(out_dir: Path) -> FinetuneResult:
    return FinetuneResult.model_validate(read_json(out_dir / RESULT))
