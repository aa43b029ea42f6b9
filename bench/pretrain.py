"""Pretraining benchmark: a character-level GPT on tiny Shakespeare, against the bar of 1.88 nats/char.

4 layers, 4 heads, width 128, context 64, batch 12, dropout 0, 2,000 steps, a 90/10 split, on CPU.
Prints tokens/s, wall time, the best validation loss, a Kneser-Ney n-gram baseline's bits per
character on the same split, and a generated sample; writes bench/results/pretrain.json and the
loss curves as bench/results/pretrain_loss.png.

    python bench/pretrain.py [PATH_TO_TINYSHAKESPEARE] [--steps 2000] [--lr 2e-3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

# OpenMP threads that spin while waiting are many times slower on a shared machine; set before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.core.config import PretrainConfig, SamplingOptions  # noqa: E402
from trainer.core.evaluation import text_score  # noqa: E402
from trainer.core.models import load_model  # noqa: E402
from trainer.core.text import load_clean_text  # noqa: E402
from trainer.ngram import KneserNeyLM  # noqa: E402
from trainer.pretrain.data import split_text  # noqa: E402
from trainer.pretrain.train import pretrain  # noqa: E402
from trainer.sampling import generate  # noqa: E402

BAR_NATS_PER_CHAR = 1.88
RESULTS = ROOT / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(ROOT / ".." / "shared" / "data" / "tinyshakespeare.txt"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-batches", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--ngram-orders", default="3,4,5")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-pretrain"))
    args = parser.parse_args()
    console = Console()

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = PretrainConfig(
        data=args.data,
        out_dir=args.out,
        tokenizer="char",
        split=(0.9, 0.1, 0.0),
        n_layer=4,
        n_head=4,
        n_embd=128,
        block_size=64,
        dropout=0.0,
        batch_size=12,
        grad_accum=1,
        max_steps=args.steps,
        lr=args.lr,
        min_lr_ratio=0.1,
        warmup_steps=args.warmup,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.99,
        grad_clip=1.0,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        seed=args.seed,
        device="cpu",
    )
    shutil.rmtree(args.out, ignore_errors=True)
    console.print(f"pretraining on {args.data} with {torch.get_num_threads()} threads ({os.cpu_count()} cores)")
    result = pretrain(cfg)

    # the whole validation split, in windows of the 64-character context, with the best weights
    model = load_model(str(result.out_dir), device="cpu")
    text = load_clean_text(args.data)
    parts = split_text(text, cfg.split)
    started = time.perf_counter()
    whole_val = text_score(model, parts.val)
    val_score_s = time.perf_counter() - started

    ngrams = {}
    for order in (int(x) for x in args.ngram_orders.split(",")):
        started = time.perf_counter()
        lm = KneserNeyLM(order).fit(parts.train)
        nats = lm.nll(parts.val)
        ngrams[order] = {
            "bits_per_char": nats / len(parts.val) / math.log(2),
            "nats_per_char": nats / len(parts.val),
            "seconds": time.perf_counter() - started,
        }

    sample = generate(model, "ROMEO:", SamplingOptions(strategy="sample", temperature=0.8, max_new_tokens=300, seed=0))
    figures = {
        "data": Path(args.data).name,
        "characters": len(text),
        "distinct_characters": len(set(text)),
        "config": cfg.model_dump(exclude={"data", "out_dir"}),
        "parameters": sum(p.numel() for p in model.model.parameters()),
        "threads": torch.get_num_threads(),
        "steps": result.steps,
        "best_step": result.best_step,
        "best_val_loss": result.best_val_loss,
        "best_val_loss_estimated_on": f"{args.eval_batches} batches of {cfg.batch_size}x{cfg.block_size}",
        "whole_val_split_nats_per_char": whole_val.nats / whole_val.chars,
        "whole_val_split_bits_per_char": whole_val.bits_per_char,
        "whole_val_split_seconds": val_score_s,
        "train_tokens_per_s": result.train_tokens_per_s,
        "wall_s": result.wall_s,
        "bar_nats_per_char": BAR_NATS_PER_CHAR,
        "passed": result.best_val_loss <= BAR_NATS_PER_CHAR,
        "ngram_baseline": ngrams,
        "sample": "ROMEO:" + sample[0],
        "history_val": result.history["val"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pretrain.json").write_text(json.dumps(figures, indent=2) + "\n")
    shutil.copy(result.out_dir / "loss_curves.png", RESULTS / "pretrain_loss.png")

    table = Table(title="pretraining tiny Shakespeare (character level, CPU)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("steps / best step", f"{result.steps} / {result.best_step}")
    table.add_row("best validation loss (nats/char)", f"{result.best_val_loss:.4f}")
    table.add_row("whole validation split (nats/char)", f"{figures['whole_val_split_nats_per_char']:.4f}")
    table.add_row("whole validation split (bits/char)", f"{whole_val.bits_per_char:.4f}")
    for order, ng in ngrams.items():
        table.add_row(f"{order}-gram Kneser-Ney (bits/char)", f"{ng['bits_per_char']:.4f}")
    table.add_row("training tokens/s", f"{result.train_tokens_per_s:,.0f}")
    table.add_row("wall time (s)", f"{result.wall_s:.0f}")
    table.add_row(f"bar: <= {BAR_NATS_PER_CHAR}", "[green]passed" if figures["passed"] else "[red]missed")
    console.print(table)
    console.print("[bold]sample[/] (temperature 0.8, seed 0):")
    console.print(figures["sample"], markup=False, highlight=False)
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
