"""`trainer pretrain`, `trainer finetune`, `trainer sample` and `trainer eval`: making a model and trying it.
Defaults and most help come from the config models (trainer/core/config.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from trainer.commands.common import option, user_errors
from trainer.core.config import (
    FULL_FINETUNE_LEARNING_RATE,
    EvalOptions,
    FinetuneConfig,
    PretrainConfig,
    SamplingOptions,
)

app = typer.Typer()
console = Console()

P, F, S, E = PretrainConfig, FinetuneConfig, SamplingOptions, EvalOptions
DEFAULT_SPLIT = ",".join(f"{x:g}" for x in P.model_fields["split"].default)


@app.command()
def pretrain(
    data: Path | None = typer.Option(None, help=P.model_fields["data"].description),
    out: Path | None = typer.Option(None, help=f"Run directory (default {P.model_fields['out_dir'].default})."),
    tokenizer: str = option(P, "tokenizer"),
    vocab_size: int | None = option(P, "vocab_size"),
    layers: int = option(P, "n_layer", "--layers"),
    heads: int = option(P, "n_head", "--heads"),
    width: int = option(P, "n_embd", "--width"),
    context: int = option(P, "block_size", "--context"),
    dropout: float = option(P, "dropout"),
    batch_size: int = option(P, "batch_size"),
    grad_accum: int = option(P, "grad_accum"),
    steps: int = option(P, "max_steps", "--steps"),
    lr: float = option(P, "lr"),
    min_lr_ratio: float = option(P, "min_lr_ratio"),
    warmup: int = option(P, "warmup_steps", "--warmup"),
    weight_decay: float = option(P, "weight_decay"),
    grad_clip: float = option(P, "grad_clip"),
    eval_every: int = option(P, "eval_every"),
    eval_batches: int = option(P, "eval_batches"),
    split: str = typer.Option(DEFAULT_SPLIT, help=P.model_fields["split"].description),
    seed: int = option(P, "seed"),
    compile: bool = option(P, "compile", "--compile"),
    device: str = option(P, "device"),
    resume: Path | None = typer.Option(
        None, help="Continue a checkpoint (or run directory) with its own settings; --data/--out may move."
    ),
    stop_after: int | None = typer.Option(
        None, help="Stop after this step, resumable (the schedule still ends at --steps)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a tokenizer and a GPT from random weights; the run directory becomes a Hugging Face model."""
    from trainer.pretrain.train import pretrain as run_pretrain
    from trainer.pretrain.train import resume_config

    with user_errors():
        if resume is not None:
            cfg = resume_config(
                resume,
                data=str(data) if data else None,
                out_dir=str(out) if out else None,
                device=device,
                compile=compile,
            )
        elif data is None:
            raise typer.BadParameter("give --data (or --resume a checkpoint)")
        else:
            cfg = PretrainConfig(
                data=str(data),
                out_dir=str(out or P.model_fields["out_dir"].default),
                tokenizer=tokenizer,
                vocab_size=vocab_size,
                split=split,
                n_layer=layers,
                n_head=heads,
                n_embd=width,
                block_size=context,
                dropout=dropout,
                batch_size=batch_size,
                grad_accum=grad_accum,
                max_steps=steps,
                lr=lr,
                min_lr_ratio=min_lr_ratio,
                warmup_steps=warmup,
                weight_decay=weight_decay,
                grad_clip=grad_clip,
                eval_every=eval_every,
                eval_batches=eval_batches,
                seed=seed,
                compile=compile,
                device=device,
            )
        result = run_pretrain(cfg, resume=resume, stop_after=stop_after, progress=not quiet)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, the first process reports
    console.print(
        f"best validation loss {result.best_val_loss:.4f} at step {result.best_step} of {result.steps}; "
        f"{result.train_tokens_per_s:,.0f} tokens/s; {result.wall_s:.0f} s; model in {result.out_dir}"
    )


@app.command()
def finetune(
    model: str = typer.Option(..., help=F.model_fields["model"].description),
    data: Path = typer.Option(..., help=F.model_fields["data"].description),
    out: Path = option(F, "out_dir", "--out"),
    method: str = option(F, "method"),
    lora_r: int = option(F, "r", "--lora-r", help="LoRA rank."),
    lora_alpha: int = option(F, "alpha", "--lora-alpha", help="LoRA alpha (the update is scaled by alpha / r)."),
    target_modules: list[str] = option(
        F,
        "target_modules",
        "--target-module",
        help="A module LoRA adapts (repeat for more; 'all-linear': every linear layer but the output head; "
        "none: peft's choice for the architecture).",
    ),
    epochs: int = option(F, "epochs", help="Passes over the training examples."),
    steps: int = option(F, "max_steps", "--steps", help="At most this many optimizer steps (0: the epochs decide)."),
    batch_size: int = option(F, "batch_size", help="Examples per micro-batch."),
    grad_accum: int = option(F, "grad_accum"),
    lr: float | None = typer.Option(
        None,
        help=f"Peak learning rate (default {F.model_fields['learning_rate'].default:g} LoRA, "
        f"{FULL_FINETUNE_LEARNING_RATE:g} full).",
    ),
    max_length: int = option(F, "max_seq_tokens", "--max-length", help="Tokens per example."),
    val_fraction: float = option(F, "val_fraction"),
    seed: int = option(F, "seed"),
    device: str = option(F, "device"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Fine-tune a causal LM in full or with LoRA; prints the held-out loss before and after."""
    from trainer.finetune import finetune as run_finetune

    with user_errors():
        cfg = FinetuneConfig(
            model=model,
            data=str(data),
            out_dir=str(out),
            method=method,
            r=lora_r,
            alpha=lora_alpha,
            target_modules=target_modules,
            epochs=epochs,
            max_steps=steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_seq_tokens=max_length,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
            **({"learning_rate": lr} if lr is not None else {}),
        )
        result = run_finetune(cfg, progress=not quiet)
    console.print(
        f"{result.steps} steps on {result.train_examples} examples; held-out loss "
        f"{result.base_val_loss:.4f} -> {result.best_val_loss:.4f}; saved to {cfg.out_dir}"
    )


@app.command()
def sample(
    model: str = typer.Option(..., help="A model directory, adapter directory or Hugging Face id."),
    prompt: str = typer.Option("", help="Text to continue (or, with --chat, a user message)."),
    chat: bool = typer.Option(False, "--chat", help="Format the prompt with the chat template."),
    strategy: str = option(S, "strategy"),
    max_new_tokens: int = option(S, "max_new_tokens"),
    temperature: float = option(S, "temperature"),
    top_k: int | None = option(S, "top_k"),
    top_p: float | None = option(S, "top_p"),
    beams: int = option(S, "num_beams", "--beams"),
    num: int = option(S, "num_return_sequences", "--num"),
    seed: int | None = option(S, "seed"),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Generate text from a model."""
    from trainer.core.models import load_model
    from trainer.sampling import generate

    with user_errors():
        options = SamplingOptions(
            strategy=strategy,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            num_beams=beams,
            num_return_sequences=num,
            seed=seed,
        )
        texts = generate(load_model(model, device=device), prompt, options, chat=chat)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            console.rule(f"{i + 1}")
        console.print(prompt + text if not chat else text, highlight=False, markup=False)


@app.command("eval")
def evaluate(
    model: str = typer.Option(..., help="A model directory, adapter directory or Hugging Face id."),
    data: Path = typer.Option(..., help="Plain text, or chat JSONL."),
    split: str = option(E, "split"),
    ngram_order: int = option(E, "ngram_order"),
    ngram_unit: str = option(E, "ngram_unit"),
    ngram_train: Path | None = option(E, "ngram_train"),
    max_replies: int = option(E, "max_replies"),
    max_new_tokens: int = option(E, "max_new_tokens"),
    stride: int | None = option(E, "stride"),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures here."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Perplexity, bits per character (and BLEU, chrF for chats) beside an n-gram baseline."""
    from trainer.core.models import load_model
    from trainer.eval_report import evaluate as run_evaluate

    with user_errors():
        options = EvalOptions(
            split=split,
            ngram_order=ngram_order,
            ngram_unit=ngram_unit,
            ngram_train=ngram_train,
            max_replies=max_replies,
            max_new_tokens=max_new_tokens,
            stride=stride,
        )
        report = run_evaluate(load_model(model, device=device), data, options)
    console.print(report.table())
    for s in report.samples[:3]:
        console.print(
            f"[dim]user:[/] {s['prompt']}\n[dim]reference:[/] {s['reference']}\n"
            f"[dim]model:[/] {s['model']}\n[dim]n-gram:[/] {s['ngram']}\n",
            highlight=False,
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
