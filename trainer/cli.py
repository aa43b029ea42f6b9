"""`trainer`: the command line of the trainer. Argument parsing only; the work is in the library modules,
imported inside each command so that `trainer --help` starts without loading torch."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console

# OpenMP threads that spin while they wait slow torch down many times over on a machine shared with
# other work; they must be told before torch loads, which the commands below do lazily
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    help="Pretrain a GPT from scratch, fine-tune, sample and evaluate causal language models.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Bad input ends the command with its message and exit status 2, not a traceback."""
    from trainer.errors import TrainerInputError

    try:
        yield
    except TrainerInputError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def pretrain(
    data: Path | None = typer.Option(None, help="A text file, or a directory of .txt/.md files."),
    out: Path | None = typer.Option(None, help="Run directory (default runs/gpt)."),
    tokenizer: str = typer.Option("char", help="char, or bpe (byte-level BPE, needs --vocab-size)."),
    vocab_size: int | None = typer.Option(None, help="Vocabulary size (BPE), or an upper bound (char)."),
    layers: int = typer.Option(4),
    heads: int = typer.Option(4),
    width: int = typer.Option(128, help="Embedding width."),
    context: int = typer.Option(64, help="Context length in tokens."),
    dropout: float = typer.Option(0.0),
    batch_size: int = typer.Option(12, help="Sequences per micro-batch (per process)."),
    grad_accum: int = typer.Option(1, help="Micro-batches per optimizer step."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
    lr: float = typer.Option(2e-3, help="Peak learning rate."),
    min_lr_ratio: float = typer.Option(0.1, help="The cosine decays to lr times this."),
    warmup: int = typer.Option(100, help="Warmup steps."),
    weight_decay: float = typer.Option(0.1),
    grad_clip: float = typer.Option(1.0, help="Clip the gradient norm to this (0: off)."),
    eval_every: int = typer.Option(250, help="Evaluate and checkpoint every this many steps."),
    eval_batches: int = typer.Option(50, help="Validation batches per evaluation."),
    split: str = typer.Option("0.9,0.05,0.05", help="Train, validation and test fractions."),
    seed: int = typer.Option(1337),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: Path | None = typer.Option(
        None, help="Continue a checkpoint (or run directory) with its own settings; --data/--out may move."
    ),
    stop_after: int | None = typer.Option(
        None, help="Stop after this step, resumable (the schedule still ends at --steps)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a tokenizer and a GPT from random weights; the run directory becomes a Hugging Face model."""
    from trainer.pretrain.train import PretrainConfig, resume_config
    from trainer.pretrain.train import pretrain as run_pretrain

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
                out_dir=str(out or "runs/gpt"),
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
        f"best validation loss {result.best_val_loss:.4f} at step {result.best_step} of {result.step}; "
        f"{result.train_tokens_per_s:,.0f} tokens/s; {result.wall_s:.0f} s; model in {result.out_dir}"
    )


@app.command()
def finetune(
    model: str = typer.Option(..., help="A model directory or Hugging Face id."),
    data: Path = typer.Option(..., help="Plain text, or chat JSONL ({'messages': [...]} per line)."),
    out: Path = typer.Option(Path("runs/finetune"), help="Where the adapter or model goes."),
    method: str = typer.Option("lora", help="lora or full."),
    lora_r: int = typer.Option(8),
    lora_alpha: int = typer.Option(16),
    epochs: int = typer.Option(1),
    steps: int | None = typer.Option(None, help="Optimizer steps (default: the epochs)."),
    batch_size: int = typer.Option(4),
    grad_accum: int = typer.Option(1),
    lr: float | None = typer.Option(None, help="Peak learning rate (default 2e-4 LoRA, 5e-5 full)."),
    max_length: int = typer.Option(512, help="Tokens per example."),
    val_fraction: float = typer.Option(0.1),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Fine-tune a causal LM in full or with LoRA; prints the held-out loss before and after."""
    from trainer.finetune import FinetuneConfig
    from trainer.finetune import finetune as run_finetune

    with user_errors():
        cfg = FinetuneConfig(
            model=model,
            data=str(data),
            out_dir=str(out),
            method=method,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            epochs=epochs,
            max_steps=steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            lr=lr,
            max_length=max_length,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
        )
        result = run_finetune(cfg, progress=not quiet)
    console.print(
        f"{result.steps} steps on {result.train_examples} examples; held-out loss "
        f"{result.val_loss_before:.4f} -> {result.val_loss_after:.4f}; saved to {result.out_dir}"
    )


@app.command()
def sample(
    model: str = typer.Option(..., help="A model directory, adapter directory or Hugging Face id."),
    prompt: str = typer.Option("", help="Text to continue (or, with --chat, a user message)."),
    chat: bool = typer.Option(False, "--chat", help="Format the prompt with the chat template."),
    strategy: str = typer.Option("sample", help="greedy, sample or beam."),
    max_new_tokens: int = typer.Option(200),
    temperature: float = typer.Option(0.8),
    top_k: int | None = typer.Option(None),
    top_p: float | None = typer.Option(None),
    beams: int = typer.Option(4, help="Beams for beam search."),
    num: int = typer.Option(1, help="How many continuations."),
    seed: int | None = typer.Option(None, help="Fix the seed: the same command gives the same text."),
    device: str = typer.Option("auto"),
) -> None:
    """Generate text from a model."""
    from trainer.model_io import load_model
    from trainer.sampling import SamplingOptions, generate

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
    split: str = typer.Option("test", help="test, val, or all (then name --ngram-train)."),
    ngram_order: int = typer.Option(5, help="The n-gram baseline's order (3 to 5)."),
    ngram_unit: str = typer.Option("char", help="char or token (the model's tokenizer)."),
    ngram_train: Path | None = typer.Option(None, help="The n-gram's training text, for --split all."),
    max_replies: int = typer.Option(50, help="Chat data: replies to generate and score."),
    max_new_tokens: int = typer.Option(64, help="Chat data: longest generated reply."),
    stride: int | None = typer.Option(None, help="Window stride for long text (default: the context)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures here."),
    device: str = typer.Option("auto"),
) -> None:
    """Perplexity, bits per character (and BLEU, chrF for chats) beside an n-gram baseline."""
    from trainer.evaluate import evaluate as run_evaluate
    from trainer.model_io import load_model

    with user_errors():
        report = run_evaluate(
            load_model(model, device=device),
            data,
            split=split,
            ngram_order=ngram_order,
            ngram_unit=ngram_unit,
            ngram_train=ngram_train,
            max_replies=max_replies,
            max_new_tokens=max_new_tokens,
            stride=stride,
        )
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


from trainer.nightly import cli as _nightly  # noqa: E402,F401  (registers nightly, status, rollback, schedule)

if __name__ == "__main__":
    app()
