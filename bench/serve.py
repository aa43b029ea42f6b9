"""Serving benchmark: the brain's engine against plain ``generate`` and transformers' ``generate_batch``.

N simulated users send a chat message at the same moment; each method answers all of them, greedy,
with the same prompts and the same reply budget:

- engine:         brain.engine.batching.Engine (continuous batching, streaming);
- generate:       one ``model.generate`` call per request, one after another (the naive server);
- generate_batch: transformers' own continuous batching, under ``torch.no_grad()``, its paged cache
                  sized for the workload (left to itself on CPU it sizes the cache from free RAM and
                  spends most of a short run zero-filling gigabytes).

All three run the same model object, as ``load_serving_model`` returns it: on CPU its linear layers use
oneDNN-packed weights (brain.engine.cpu_linear); ``--stock-weights`` measures transformers' defaults.

Aggregate decode throughput is generated tokens (EOS excluded) over wall time from the first request
to the last reply. Run from the repository root:

    python -m bench.serve                      # users 1,4,16,32, 64 new tokens
    python -m bench.serve --users 1,16 --max-new-tokens 16 --repeats 1   # a quick look

Prints a table and writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

# OpenMP threads that spin while waiting collapse (steps 10-50x slower) when other processes share the
# cores; sleeping waiters keep every method's timings stable. Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from transformers import ContinuousBatchingConfig, GenerationConfig, GenerationMixin  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from brain.engine.batching import Engine, GenerationRequest  # noqa: E402
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS, LoadedModel, load_serving_model  # noqa: E402
from brain.settings import Settings  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve.json"
QUESTIONS = [
    "Explain how a rainbow forms.",
    "Write a short poem about the sea.",
    "Give me three tips for learning to cook.",
    "What is the capital of France?",
    "Why is the sky blue?",
    "How do I make a good cup of tea?",
    "Describe a cat to someone who has never seen one.",
    "What are the benefits of regular exercise?",
    "Tell me a short story about a brave mouse.",
    "How does a bicycle stay upright?",
    "What should I pack for a weekend hiking trip?",
    "Explain what a computer program is to a child.",
    "Suggest a name for a friendly robot and say why.",
    "How can I sleep better at night?",
    "What is photosynthesis?",
    "Write a haiku about autumn leaves.",
]
PERSONAS = ["", "You are a cheerful assistant who answers briefly.", "You are a patient teacher."]


@dataclass
class Run:
    method: str
    users: int
    tokens: int
    seconds: float
    ttft_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    replies: list[list[int]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def chat_prompts(loaded: LoadedModel, users: int) -> list[list[int]]:
    """Varied chat prompts through the model's chat template: different questions, some with a persona."""
    prompts = []
    for index in range(users):
        persona = PERSONAS[index % len(PERSONAS)]
        messages = ([{"role": "system", "content": persona}] if persona else []) + [
            {"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}
        ]
        text = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompts.append(loaded.tokenizer.encode(text))
    return prompts


def strip_eos(reply: list[int], eos: set[int]) -> list[int]:
    return next((reply[:index] for index, token in enumerate(reply) if token in eos), reply)


async def run_engine(engine: Engine, prompts: list[list[int]], max_new_tokens: int) -> Run:
    start = time.perf_counter()

    async def one(prompt: list[int]) -> tuple[list[int], float, float]:
        handle = engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=max_new_tokens))
        reply: list[int] = []
        first = float("nan")
        async for token in handle:
            if not reply:
                first = time.perf_counter() - start
            reply.append(token)
        return reply, first, time.perf_counter() - start

    results = await asyncio.gather(*(one(prompt) for prompt in prompts))
    seconds = time.perf_counter() - start
    replies = [reply for reply, _, _ in results]
    return Run(
        "engine",
        len(prompts),
        sum(map(len, replies)),
        seconds,
        ttft_s=[first for _, first, _ in results],
        latency_s=[total for _, _, total in results],
        replies=replies,
    )


class _FirstTokenClock(BaseStreamer):
    """Notes when ``generate`` hands out its first new token (its first ``put`` is the prompt)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def generator(loaded: LoadedModel) -> GenerationMixin:
    """The loaded model as what generates: PreTrainedModel does not declare ``generate``; every causal LM mixes it
    in (GenerationMixin)."""
    return cast(GenerationMixin, loaded.model)


def run_generate(loaded: LoadedModel, prompts: list[list[int]], max_new_tokens: int) -> Run:
    eos = sorted(loaded.eos_token_ids)
    replies, ttft, latency = [], [], []
    start = time.perf_counter()
    with torch.no_grad():
        for prompt in prompts:
            began, clock = time.perf_counter(), _FirstTokenClock()
            ids = torch.tensor([prompt], device=loaded.device)
            output = generator(loaded).generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos[0],
                streamer=clock,
            )
            latency.append(time.perf_counter() - began)
            ttft.append((clock.first or time.perf_counter()) - began)
            replies.append(strip_eos(output[0, len(prompt) :].tolist(), loaded.eos_token_ids))
    seconds = time.perf_counter() - start
    return Run("generate", len(prompts), sum(map(len, replies)), seconds, ttft, latency, replies)


def run_generate_batch(loaded: LoadedModel, prompts: list[list[int]], max_new_tokens: int) -> Run:
    eos = sorted(loaded.eos_token_ids)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos[0])
    page = 256  # transformers' default page size
    pages_per_request = -(-(max(map(len, prompts)) + max_new_tokens) // page)
    batching = ContinuousBatchingConfig(num_blocks=len(prompts) * pages_per_request + 4)
    # generate_batch takes only its own attention implementations; the engine sets its own back on its next step
    loaded.model.set_attn_implementation("sdpa")
    start = time.perf_counter()
    with torch.no_grad():
        outputs = generator(loaded).generate_batch(
            inputs=prompts, generation_config=config, continuous_batching_config=batching
        )
    seconds = time.perf_counter() - start
    by_prompt = sorted(outputs.values(), key=lambda output: int(output.request_id.rsplit("_", 1)[-1]))
    replies = [strip_eos(list(output.generated_tokens), loaded.eos_token_ids) for output in by_prompt]
    return Run("generate_batch", len(prompts), sum(map(len, replies)), seconds, replies=replies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(args: argparse.Namespace, loaded: LoadedModel, console: Console) -> dict:
    engine = Engine(
        loaded.model, max_batch_size=max(args.users), eos_token_ids=loaded.eos_token_ids, device=loaded.device
    )
    engine.start()
    warm = chat_prompts(loaded, 2)
    await run_engine(engine, warm, 4)
    run_generate(loaded, warm[:1], 4)
    run_generate_batch(loaded, warm, 4)
    rows = []
    try:
        for users in args.users:
            prompts = chat_prompts(loaded, users)
            runs: dict[str, list[Run]] = {"engine": [], "generate": [], "generate_batch": []}
            # interleaved, so that a busy machine slows every method alike
            for repeat in range(args.repeats):
                console.log(f"{users} users, round {repeat + 1}/{args.repeats}")
                runs["engine"].append(await run_engine(engine, prompts, args.max_new_tokens))
                runs["generate_batch"].append(run_generate_batch(loaded, prompts, args.max_new_tokens))
                # per-request generate is slow and its rate does not depend on the number of users
                if repeat < (args.repeats if users <= 4 else args.generate_repeats):
                    runs["generate"].append(run_generate(loaded, prompts, args.max_new_tokens))
            rows.append(summarise(users, runs))
    finally:
        engine.stop()
    return {"rows": rows}


def summarise(users: int, runs: dict[str, list[Run]]) -> dict:
    median = {name: statistics.median(run.tokens_per_s for run in group) for name, group in runs.items()}
    engine_runs = runs["engine"]
    reference = runs["generate"][0].replies
    same = sum(a == b for a, b in zip(engine_runs[0].replies, reference, strict=True))
    return {
        "users": users,
        "tokens_per_s": median,
        "tokens": {name: [run.tokens for run in group] for name, group in runs.items()},
        "seconds": {name: [round(run.seconds, 3) for run in group] for name, group in runs.items()},
        "engine_vs_generate": median["engine"] / median["generate"],
        "engine_vs_generate_batch": median["engine"] / median["generate_batch"],
        "engine_ttft_s": _quantiles([t for run in engine_runs for t in run.ttft_s]),
        "engine_latency_s": _quantiles([t for run in engine_runs for t in run.latency_s]),
        "generate_ttft_s": _quantiles([t for run in runs["generate"] for t in run.ttft_s]),
        "generate_latency_s": _quantiles([t for run in runs["generate"] for t in run.latency_s]),
        "engine_replies_equal_generate": f"{same}/{users}",
    }


def _quantiles(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}


def print_tables(console: Console, result: dict) -> None:
    table = Table(title=f"Aggregate decode throughput, tokens/s (median of rounds), {result['model']}")
    for column in ("users", "engine", "generate", "gen_batch", "eng/gen", "eng/batch"):
        table.add_column(column, justify="right")
    table.add_column("engine TTFT\np50/p95 s", justify="right")
    table.add_column("engine reply\np50/p95 s", justify="right")
    table.add_column("same as\ngenerate", justify="right")
    for row in result["rows"]:
        rate = row["tokens_per_s"]
        table.add_row(
            str(row["users"]),
            f"{rate['engine']:.1f}",
            f"{rate['generate']:.1f}",
            f"{rate['generate_batch']:.1f}",
            f"{row['engine_vs_generate']:.2f}x",
            f"{row['engine_vs_generate_batch']:.2f}x",
            f"{row['engine_ttft_s']['p50']:.2f} / {row['engine_ttft_s']['p95']:.2f}",
            f"{row['engine_latency_s']['p50']:.2f} / {row['engine_latency_s']['p95']:.2f}",
            row["engine_replies_equal_generate"],
        )
    console.print(table)
    single = next((row for row in result["rows"] if row["users"] == 1), None)
    if single:
        latency = Table(title="Single user: latency (seconds, median)")
        for column in ("method", "time to first token", "whole reply"):
            latency.add_column(column, justify="right")
        for method in ("engine", "generate"):
            latency.add_row(
                method, f"{single[f'{method}_ttft_s']['p50']:.3f}", f"{single[f'{method}_latency_s']['p50']:.3f}"
            )
        console.print(latency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1,4,16,32", help="comma-separated numbers of concurrent users")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of engine and generate_batch")
    parser.add_argument("--generate-repeats", type=int, default=1, help="rounds of the slow per-request generate")
    parser.add_argument("--model", default=DEFAULT_MODEL_ALIAS)
    parser.add_argument(
        "--stock-weights",
        action="store_true",
        help="keep transformers' own CPU linear layers, not the oneDNN-packed ones that load_serving_model sets up",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.users = [int(users) for users in args.users.split(",")]
    args.generate_repeats = max(1, min(args.generate_repeats, args.repeats))

    console = Console(width=120)
    loaded = load_serving_model(
        args.model,
        cache_dir=Settings().model.cache_dir,
        device="cpu",
        dtype="float32",
        pack_cpu_weights=not args.stock_weights,
    )
    result = asyncio.run(measure(args, loaded, console))
    result |= {
        "model": args.model,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype),
        "max_new_tokens": args.max_new_tokens,
        "cpu_weights": "stock" if args.stock_weights else "onednn-packed (all methods share the loaded model)",
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    print_tables(console, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
