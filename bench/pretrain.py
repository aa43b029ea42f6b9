"""Pretraining benchmark: `trainer pretrain` beside nanoGPT, back to back, on nanoGPT's CPU config for tiny Shakespeare.

Both train a character-level GPT of 4 layers, 4 heads, width 128, context 64, batch 12, dropout 0 for 2,000
steps (lr 1e-3 after 100 warmup steps, cosine down to 1e-4, AdamW betas (0.9, 0.99), weight decay 0.1,
gradient clipping at 1.0, an evaluation every 250 steps) on the same 90/10 split of the text. Each runs as
its own command, the way a user runs it:

    ours:  python -m trainer pretrain --data ... --lr 1e-3 ... --eval-batches 20
    peer:  python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
           --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
           --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

with the same environment and thread count, interleaved (ours, peer, ours, peer, ...) so that a change in
the machine's load falls on both; the table gives each run and the medians. The machine's load average
is recorded around every run. Both trainers are seeded: a second round repeats the same training, and
only its timings differ.

- wall s: the whole command, start to exit (imports, data, training, evaluations, checkpoints, export);
  tok/s: the tokens trained over that time; CPU s: user + system time of the command, which moves less
  than wall time when other work shares the cores.
- best val: each run's own best validation estimate. nanoGPT's is the least of its evaluations, each on
  20 random batches (with 20 more of the training split); ours the least of its evaluations, each on the
  same 20 validation batches (our loop keeps the training loss of every step, so it skips the second estimate).
- whole val: each run's best model scored afterwards, by this script, on the whole validation split in
  windows of the context (the quantity both estimates sample, without their noise): the fair comparison.

nanoGPT is not on PyPI. Put karpathy/nanoGPT's model.py, train.py, configurator.py,
config/train_shakespeare_char.py and data/shakespeare_char/prepare.py in a folder outside the project
(default ~/.cache/ownchat/nanogpt); the peer runs when the folder exists or --nanogpt names it. Its data
is prepared here from the same text file.

    python bench/pretrain.py [--nanogpt DIR | --no-peer] [--rounds 2] [--steps 2000] [--lr 1e-3]

Writes bench/results/pretrain.json and our run's loss curves as bench/results/pretrain_loss.png.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import pickle
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

# OpenMP threads that spin while waiting are many times slower on a shared machine; set before torch
# loads, and passed to both runs
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.core.config import SamplingOptions  # noqa: E402
from trainer.core.models import load_model  # noqa: E402
from trainer.core.text import load_clean_text  # noqa: E402
from trainer.pretrain.data import split_text  # noqa: E402
from trainer.sampling import generate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_NANOGPT = Path("~/.cache/ownchat/nanogpt").expanduser()
BAR_NATS_PER_CHAR = 1.88  # design.md's bar for this model, at the project's own learning rate

# nanoGPT's config/train_shakespeare_char.py, shrunk as its README does for a CPU (its learning rate is
# 1e-3, decaying to a tenth of it)
LAYERS, HEADS, WIDTH, CONTEXT, BATCH = 4, 4, 128, 64, 12
WARMUP, EVAL_EVERY, EVAL_BATCHES = 100, 250, 20


class Run(BaseModel):
    trainer: Literal["ownchat", "nanogpt"]
    round: int
    steps: int
    wall_s: float
    cpu_s: float
    tokens_per_s: float
    best_val_loss: float  # the run's own estimate
    whole_val_nats_per_char: float  # its best model on the whole validation split, scored here
    load_before: float  # 1-minute load average
    load_after: float


class Side(BaseModel):
    wall_s: float
    cpu_s: float
    tokens_per_s: float
    best_val_loss: float
    whole_val_nats_per_char: float


class Result(BaseModel):
    data: str
    steps: int
    lr: float
    threads: int
    cpu_count: int
    torch: str
    rounds: int
    runs: list[Run]
    median: dict[str, Side]
    speed_ratio: float | None  # ours / nanoGPT, tokens per second
    val_difference: float | None  # ours - nanoGPT, whole validation split (nats/char)
    passed: bool | None  # at least as fast, and the same or a lower validation loss
    load_average: float  # mean of the samples around the runs
    bar_nats_per_char: float
    sample: str


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "tinyshakespeare.txt"))
    parser.add_argument("--nanogpt", type=Path, default=None, help=f"nanoGPT's folder (default {DEFAULT_NANOGPT})")
    parser.add_argument("--no-peer", action="store_true", help="run ours only")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, interleaved")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of both (the last is a tenth)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-pretrain")
    args = parser.parse_args()
    console = Console()

    peer = None if args.no_peer else args.nanogpt or (DEFAULT_NANOGPT if DEFAULT_NANOGPT.is_dir() else None)
    if args.nanogpt is not None and not (args.nanogpt / "train.py").is_file():
        parser.error(f"{args.nanogpt} holds no nanoGPT train.py")
    data = Path(args.data).resolve()
    out_root = args.out.resolve()  # the peer runs in its own folder
    threads = os.cpu_count() or 1
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    val_text = split_text(load_clean_text(data), (0.9, 0.1, 0.0)).val
    if peer is not None:
        prepare_nanogpt_data(peer, data, env)
    console.print(
        f"{args.rounds} round(s) of {args.steps} steps at lr {args.lr:g} on {data.name}, {threads} threads, "
        f"peer: {peer or 'none (no nanoGPT folder)'}"
    )

    runs: list[Run] = []
    shutil.rmtree(out_root, ignore_errors=True)
    for round_ in range(1, args.rounds + 1):
        out = out_root / f"ownchat-{round_}"
        run = timed(ours_command(data, out, args.steps, args.lr, args.seed), ROOT, env, out.with_suffix(".log"))
        meta = json.loads((out / "checkpoints" / "last" / "checkpoint.json").read_text())
        runs.append(
            finish(run, "ownchat", round_, args.steps, meta["best_val_loss"], score_ours(out, val_text), console)
        )
        if peer is not None:
            out = out_root / f"nanogpt-{round_}"
            run = timed(peer_command(out, args.steps, args.lr), peer, env, out.with_suffix(".log"))
            log = out.with_suffix(".log").read_text()
            vals = [float(v) for v in re.findall(r"^step \d+: train loss [\d.]+, val loss ([\d.]+)", log, re.M)]
            if not vals:
                raise SystemExit(f"nanoGPT reported no evaluation; see {out.with_suffix('.log')}")
            # its loop trains one step more than max_iters: steps 0 to max_iters, both included
            whole = score_nanogpt(peer, out, val_text)
            runs.append(finish(run, "nanogpt", round_, args.steps + 1, min(vals), whole, console))

    ours = [r for r in runs if r.trainer == "ownchat"]
    theirs = [r for r in runs if r.trainer == "nanogpt"]
    median = {"ownchat": middle(ours)} | ({"nanogpt": middle(theirs)} if theirs else {})
    ratio = difference = passed = None
    if theirs:
        ratio = median["ownchat"].tokens_per_s / median["nanogpt"].tokens_per_s
        difference = median["ownchat"].whole_val_nats_per_char - median["nanogpt"].whole_val_nats_per_char
        passed = ratio >= 1.0 and difference <= 0.0
    model = load_model(str(out_root / f"ownchat-{args.rounds}"), device="cpu")
    sample = generate(model, "ROMEO:", SamplingOptions(strategy="sample", temperature=0.8, max_new_tokens=300, seed=0))
    result = Result(
        data=data.name,
        steps=args.steps,
        lr=args.lr,
        threads=threads,
        cpu_count=os.cpu_count() or 1,
        torch=torch.__version__,
        rounds=args.rounds,
        runs=runs,
        median=median,
        speed_ratio=ratio,
        val_difference=difference,
        passed=passed,
        load_average=statistics.mean(x for r in runs for x in (r.load_before, r.load_after)),
        bar_nats_per_char=BAR_NATS_PER_CHAR,
        sample="ROMEO:" + sample[0],
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pretrain.json").write_text(result.model_dump_json(indent=2) + "\n")
    shutil.copy(out_root / f"ownchat-{args.rounds}" / "loss_curves.png", RESULTS / "pretrain_loss.png")
    report(result, console)
    return 1 if passed is False else 0


# -- the two commands


def ours_command(data: Path, out: Path, steps: int, lr: float, seed: int) -> list[str]:
    return [
        sys.executable, "-m", "trainer", "pretrain",
        "--data", str(data), "--out", str(out), "--tokenizer", "char", "--split", "0.9,0.1",
        "--layers", str(LAYERS), "--heads", str(HEADS), "--width", str(WIDTH), "--context", str(CONTEXT),
        "--dropout", "0", "--batch-size", str(BATCH), "--steps", str(steps),
        "--lr", str(lr), "--min-lr-ratio", "0.1", "--warmup", str(WARMUP),
        "--weight-decay", "0.1", "--grad-clip", "1.0",
        "--eval-every", str(EVAL_EVERY), "--eval-batches", str(EVAL_BATCHES),
        "--seed", str(seed), "--device", "cpu",
    ]  # fmt: skip


def peer_command(out: Path, steps: int, lr: float) -> list[str]:
    return [
        sys.executable, "train.py", "config/train_shakespeare_char.py",
        "--device=cpu", "--compile=False", f"--eval_iters={EVAL_BATCHES}", "--log_interval=1",
        f"--block_size={CONTEXT}", f"--batch_size={BATCH}", f"--n_layer={LAYERS}", f"--n_head={HEADS}",
        f"--n_embd={WIDTH}", f"--max_iters={steps}", f"--lr_decay_iters={steps}", "--dropout=0.0",
        f"--learning_rate={lr!r}", f"--min_lr={lr / 10!r}", f"--out_dir={out}",
    ]  # fmt: skip


def prepare_nanogpt_data(peer: Path, data: Path, env: dict[str, str]) -> None:
    """nanoGPT's train.bin, val.bin and meta.pkl, from our text file (its prepare.py downloads its own copy
    only when input.txt is missing)."""
    folder = peer / "data" / "shakespeare_char"
    source = folder / "input.txt"
    prepared = (folder / "val.bin").is_file() and source.is_file()
    if prepared and digest(source) == digest(data):
        return
    shutil.copyfile(data, source)
    subprocess.run([sys.executable, "prepare.py"], cwd=folder, env=env, check=True, capture_output=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Timed(BaseModel):
    wall_s: float
    cpu_s: float
    load_before: float
    load_after: float


def timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Timed:
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as sink:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:4])} failed ({done.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall_s=wall, cpu_s=cpu, load_before=load_before, load_after=os.getloadavg()[0])


def finish(
    run: Timed, trainer: Literal["ownchat", "nanogpt"], round_: int, steps: int, best: float, whole: float, out: Console
) -> Run:
    tokens = steps * BATCH * CONTEXT
    figures = Run(
        trainer=trainer,
        round=round_,
        steps=steps,
        tokens_per_s=tokens / run.wall_s,
        best_val_loss=best,
        whole_val_nats_per_char=whole,
        **run.model_dump(),
    )
    out.print(
        f"{trainer} round {round_}: {run.wall_s:.1f} s, {figures.tokens_per_s:,.0f} tok/s, best val {best:.4f}, "
        f"whole val {whole:.4f}, load {run.load_before:.1f} -> {run.load_after:.1f}"
    )
    return figures


# -- one scorer for both


@torch.no_grad()
def windows_nll(logits_of: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, batch: int = 64) -> float:
    """Mean negative log-likelihood per token over consecutive windows of the context: each token is
    predicted from the ones before it in its window, as in training."""
    n = (len(ids) - 1) // CONTEXT
    x = ids[: n * CONTEXT].view(n, CONTEXT)
    y = ids[1 : n * CONTEXT + 1].view(n, CONTEXT)
    total = 0.0
    for i in range(0, n, batch):
        logits = logits_of(x[i : i + batch]).float()
        total += float(torch.nn.functional.cross_entropy(logits.transpose(1, 2), y[i : i + batch], reduction="sum"))
    return total / (n * CONTEXT)


def score_ours(out: Path, val_text: str) -> float:
    """The run directory as transformers loads it (GPT2LMHeadModel), on characters: one token each."""
    loaded = load_model(str(out), device="cpu")
    ids = torch.tensor(loaded.tokenizer(val_text, add_special_tokens=False, verbose=False)["input_ids"])
    assert len(ids) == len(val_text), "a character tokenizer spells each character with one token"
    return windows_nll(lambda x: loaded.model(input_ids=x).logits, ids)


def score_nanogpt(peer: Path, out: Path, val_text: str) -> float:
    """nanoGPT's best checkpoint (it saves when an evaluation improves), with its own model code."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", peer / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checkpoint = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False)
    model = module.GPT(module.GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()})
    model.eval()
    stoi = pickle.loads((peer / "data" / "shakespeare_char" / "meta.pkl").read_bytes())["stoi"]
    ids = torch.tensor([stoi[c] for c in val_text])
    dummy = torch.zeros(1, dtype=torch.long)
    # with targets, its forward returns the logits of every position (without, the last one only)
    return windows_nll(lambda x: model(x, dummy.expand_as(x))[0], ids)


def middle(runs: list[Run]) -> Side:
    return Side(
        **{name: statistics.median(getattr(r, name) for r in runs) for name in Side.model_fields},
    )


def report(result: Result, console: Console) -> None:
    table = Table(
        title=f"pretraining tiny Shakespeare, {result.steps} steps, lr {result.lr:g}, {result.threads} threads (CPU)"
    )
    for column in ("trainer", "round", "wall s", "CPU s", "tok/s", "best val", "whole val", "load avg"):
        table.add_column(column, justify="left" if column == "trainer" else "right")
    for r in result.runs:
        table.add_row(
            r.trainer,
            str(r.round),
            f"{r.wall_s:.1f}",
            f"{r.cpu_s:.1f}",
            f"{r.tokens_per_s:,.0f}",
            f"{r.best_val_loss:.4f}",
            f"{r.whole_val_nats_per_char:.4f}",
            f"{r.load_before:.1f}-{r.load_after:.1f}",
        )
    for name, side in result.median.items():
        table.add_row(
            f"[bold]{name} (median)",
            "",
            f"{side.wall_s:.1f}",
            f"{side.cpu_s:.1f}",
            f"{side.tokens_per_s:,.0f}",
            f"{side.best_val_loss:.4f}",
            f"{side.whole_val_nats_per_char:.4f}",
            "",
        )
    console.print(table)
    if result.speed_ratio is not None and result.val_difference is not None:
        verdict = "[green]passed" if result.passed else "[red]missed"
        console.print(
            f"ours/nanoGPT speed {result.speed_ratio:.2f}x; whole-split validation loss {result.val_difference:+.4f} "
            f"nats/char against nanoGPT's; mean load average {result.load_average:.1f} on {result.cpu_count} "
            f"cores: {verdict}"
        )
    console.print("[bold]sample[/] (temperature 0.8, seed 0):")
    console.print(result.sample, markup=False, highlight=False)


if __name__ == "__main__":
    raise SystemExit(main())
