"""Decoding speed of the engine for few members: this tree's engine against an earlier revision's, A/B.

Both engines run in one process on one loaded model (the shipped settings: ``model.cpu_weights``), so a
busy machine slows both alike; the earlier revision's ``brain/engine`` is read from git into a package of
its own. Rounds alternate which engine goes first. Each round, each engine answers ``users`` members at
once, greedy, ``--max-new-tokens`` tokens each (no end token stops them), from a short chat prompt and
from a long conversation (about ``--long-tokens`` tokens). Reported, per case: the median decode rate
(tokens after each member's first, over the time from the last first token to the last token), the
median CPU time per token (process time, which the other processes on the machine disturb far less than
wall time), the ratio of the medians, and the load average beside every round.
Before timing, both engines answer the same prompts with end tokens on; the replies are compared.

    python -m bench.decode_speed --baseline main           # users 1 and 4, 9 rounds
    python -m bench.decode_speed --users 1 --rounds 3      # a quick look

Prints a table and writes bench/results/decode_speed.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# see bench/serve.py: sleeping OpenMP waiters keep timings stable on a shared machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.serve import PERSONAS, QUESTIONS  # noqa: E402
from brain.engine.batching import Engine, GenerationRequest  # noqa: E402
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS, LoadedModel, load_serving_model  # noqa: E402
from brain.settings import Settings  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "decode_speed.json"
ROOT = Path(__file__).resolve().parent.parent
BASELINE_PACKAGE = "ownchat_baseline_engine"


def baseline_module(revision: str, into: Path, module: str) -> Any:
    """Module ``module`` (``batching``, ``runner``...) of ``brain/engine`` at ``revision``, imported from a package
    of its own (its attention registered under another name, so that both engines live in one process)."""
    package = into / BASELINE_PACKAGE
    if not package.exists():
        package.mkdir()
        (package / "__init__.py").write_text("")
        listing = subprocess.run(
            ["git", "ls-tree", "--name-only", f"{revision}:brain/engine"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        for name in listing:
            if not name.endswith(".py"):
                continue
            text = subprocess.run(
                ["git", "show", f"{revision}:brain/engine/{name}"], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
            text = text.replace("brain.engine.", f"{BASELINE_PACKAGE}.")
            text = text.replace('ATTENTION_NAME = "ownchat_rows"', 'ATTENTION_NAME = "ownchat_rows_baseline"')
            (package / name).write_text(text)
        sys.path.insert(0, str(into))
    return importlib.import_module(f"{BASELINE_PACKAGE}.{module}")


def revision_of(name: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", name], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def chat_prompt(loaded: LoadedModel, index: int, long_tokens: int) -> list[int]:
    """A member's prompt: a question after a persona, or, with ``long_tokens``, after a conversation that long."""
    tokenizer = loaded.tokenizer
    persona = PERSONAS[index % len(PERSONAS)] or "You are a helpful assistant."
    messages = [{"role": "system", "content": persona}]
    turn = index
    while long_tokens and len(tokenizer.apply_chat_template(messages, tokenize=False)) < 4 * long_tokens:
        question = QUESTIONS[turn % len(QUESTIONS)]
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"Here is what I know about that. {question} " * 3},
        ]
        turn += 1
    messages.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text)


async def one_run(engine: Any, prompts: list[list[int]], max_new_tokens: int, stop: frozenset[int]) -> dict:
    """Every prompt answered at once; the replies and the decode timing."""
    firsts: list[tuple[float, float]] = []  # wall and process time of each reply's first token

    async def one(prompt: list[int]) -> list[int]:
        handle = engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=max_new_tokens, stop_token_ids=stop))
        reply: list[int] = []
        async for token in handle:
            if not reply:
                firsts.append((time.perf_counter(), time.process_time()))
            reply.append(token)
        return reply

    load = os.getloadavg()[0]
    replies = await asyncio.gather(*(one(prompt) for prompt in prompts))
    end, end_cpu = time.perf_counter(), time.process_time()
    decoded = sum(len(reply) - 1 for reply in replies)
    start, start_cpu = max(firsts)  # from the moment every member has a first token: decoding only
    return {
        "replies": replies,
        "decode_tokens_per_s": decoded / (end - start) if decoded else 0.0,
        "cpu_ms_per_token": 1000 * (end_cpu - start_cpu) / max(1, decoded),
        "load_1min": load,
    }


async def measure(args: argparse.Namespace, loaded: LoadedModel, baseline: Any, console: Console) -> dict:
    engines = {
        "before": baseline(loaded.model, max_batch_size=max(args.users), eos_token_ids=set(), device=loaded.device),
        "after": Engine(loaded.model, max_batch_size=max(args.users), eos_token_ids=set(), device=loaded.device),
    }
    for engine in engines.values():
        engine.start()
    eos = frozenset(loaded.eos_token_ids)
    result: dict[str, Any] = {"cases": [], "same_replies": {}}
    try:
        # the replies of both, end tokens on: the same tokens?
        for kind, long_tokens in (("short", 0), ("long", args.long_tokens)):
            prompts = [chat_prompt(loaded, index, long_tokens) for index in range(args.check_prompts)]
            replies = {
                name: (await one_run(engine, prompts, args.check_tokens, eos))["replies"]
                for name, engine in engines.items()
            }
            same = sum(a == b for a, b in zip(replies["before"], replies["after"], strict=True))
            first_difference = [
                next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                for a, b in zip(replies["before"], replies["after"], strict=True)
                if a != b
            ]
            result["same_replies"][kind] = {
                "same": f"{same}/{len(prompts)}",
                "first_difference_at": first_difference,
                "prompt_tokens": [len(prompt) for prompt in prompts],
            }
            console.log(f"{kind} prompts: {same}/{len(prompts)} replies identical {first_difference}")
        for users in args.users:
            for kind, long_tokens in (("short", 0), ("long", args.long_tokens)):
                prompts = [chat_prompt(loaded, index, long_tokens) for index in range(users)]
                runs: dict[str, list[dict]] = {"before": [], "after": []}
                for engine in engines.values():  # warm-up
                    await one_run(engine, prompts, 8, frozenset())
                for round_ in range(args.rounds):
                    order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
                    for name in order:
                        run = await one_run(engines[name], prompts, args.max_new_tokens, frozenset())
                        del run["replies"]
                        runs[name].append(run)
                    console.log(
                        f"{users} users, {kind}, round {round_ + 1}/{args.rounds}: "
                        + ", ".join(f"{name} {runs[name][-1]['decode_tokens_per_s']:.1f} tok/s" for name in order)
                        + f", load {os.getloadavg()[0]:.1f}"
                    )
                result["cases"].append(summarise(users, kind, prompts, runs))
    finally:
        for engine in engines.values():
            engine.stop()
    return result


def summarise(users: int, kind: str, prompts: list[list[int]], runs: dict[str, list[dict]]) -> dict:
    median = {
        name: {
            "decode_tokens_per_s": statistics.median(run["decode_tokens_per_s"] for run in group),
            "cpu_ms_per_token": statistics.median(run["cpu_ms_per_token"] for run in group),
        }
        for name, group in runs.items()
    }
    return {
        "users": users,
        "prompt": kind,
        "prompt_tokens": [len(prompt) for prompt in prompts],
        "median": median,
        "speedup_decode_rate": median["after"]["decode_tokens_per_s"] / median["before"]["decode_tokens_per_s"],
        "cpu_time_ratio": median["after"]["cpu_ms_per_token"] / median["before"]["cpu_ms_per_token"],
        "rounds": runs,
    }


def print_table(console: Console, result: dict) -> None:
    table = Table(title=f"Decoding, {result['model']} ({result['dtype']}), before = {result['baseline']}")
    for column in ("users", "prompt", "before tok/s", "after tok/s", "ratio", "before CPU ms/tok", "after CPU ms/tok"):
        table.add_column(column, justify="right")
    table.add_column("CPU ratio", justify="right")
    table.add_column("load 1 min", justify="right")
    for case in result["cases"]:
        median = case["median"]
        loads = [run["load_1min"] for group in case["rounds"].values() for run in group]
        table.add_row(
            str(case["users"]),
            f"{case['prompt']} ({max(case['prompt_tokens'])})",
            f"{median['before']['decode_tokens_per_s']:.1f}",
            f"{median['after']['decode_tokens_per_s']:.1f}",
            f"{case['speedup_decode_rate']:.2f}x",
            f"{median['before']['cpu_ms_per_token']:.1f}",
            f"{median['after']['cpu_ms_per_token']:.1f}",
            f"{1 / case['cpu_time_ratio']:.2f}x",
            f"{min(loads):.1f}-{max(loads):.1f}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="the git revision whose brain/engine is 'before'")
    parser.add_argument("--users", default="1,4", help="comma-separated numbers of members decoding at once")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--long-tokens", type=int, default=1000, help="about how long the long conversation is")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--check-prompts", type=int, default=6, help="prompts whose replies are compared")
    parser.add_argument("--check-tokens", type=int, default=64)
    parser.add_argument("--model", default=DEFAULT_MODEL_ALIAS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.users = [int(users) for users in args.users.split(",")]

    console = Console(width=140)
    settings = Settings().model
    loaded = load_serving_model(
        args.model, cache_dir=settings.cache_dir, device="cpu", cpu_weights=settings.cpu_weights
    )
    revision = revision_of(args.baseline)
    with tempfile.TemporaryDirectory() as folder:
        baseline = baseline_module(revision, Path(folder), "batching").Engine
        result = asyncio.run(measure(args, loaded, baseline, console))
    result |= {
        "model": args.model,
        "baseline": f"{args.baseline} ({revision})",
        "device": str(loaded.device),
        "dtype": str(loaded.dtype),
        "cpu_weights": settings.cpu_weights,
        "max_new_tokens": args.max_new_tokens,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    print_table(console, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
