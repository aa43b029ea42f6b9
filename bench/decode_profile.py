"""Where a one-member decoding step goes: operator counts, top operators, CPU time per step.

Runs the engine's model runner directly (no worker thread) on the default model with the shipped CPU
weights, one member, and compares, in one process and alternating: the runner of an earlier revision
(``--baseline``), this tree's runner on transformers' generic forward pass, and this tree's lean
decoding path (brain/engine/lean_decode.py). For each: CPU time per step (thread time, on one torch
thread, so that other processes on the machine cost it little), and, under torch.profiler, the
operator calls per step and the share of the step that the operators' own time accounts for (the rest
is Python: transformers' modules, the engine's bookkeeping).

    python -m bench.decode_profile --baseline main

Prints tables (what bench/results/decode_profile.md reports) and writes bench/results/decode_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench.decode_speed import baseline_module, chat_prompt, revision_of  # noqa: E402
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS, load_serving_model  # noqa: E402
from brain.engine.runner import ModelRunner  # noqa: E402
from brain.engine.scheduler import GenerationRequest, PrefillGroup, PrefillSlice, StepPlan  # noqa: E402
from brain.settings import Settings  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "decode_profile.json"


class Decoding:
    """One member decoding on one runner, stepped by hand."""

    def __init__(self, runner: Any, prompt: list[int], max_new_tokens: int) -> None:
        self.runner, self.prompt = runner, prompt
        self.requests = {0: GenerationRequest(prompt_ids=prompt, max_new_tokens=max_new_tokens)}
        self.decode = StepPlan((), (), (), (0,), ())
        self.steps = 0
        self.restart()

    def restart(self) -> None:
        self.runner.release(0, keep=False)
        whole = PrefillGroup(None, (PrefillSlice(0, 0, len(self.prompt), 0, None, True),))
        self.runner.execute(StepPlan((), (), (), (), (whole,)), self.requests)
        self.steps = 0

    def step(self) -> None:
        if self.steps >= 200:  # keep the context near the prompt's length
            self.restart()
        self.runner.execute(self.decode, self.requests)
        self.steps += 1


def cpu_ms_per_step(decoding: Decoding, steps: int) -> float:
    start = time.thread_time()
    for _ in range(steps):
        decoding.step()
    return 1000 * (time.thread_time() - start) / steps


def profiled(decoding: Decoding, steps: int, layers: int) -> dict:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        wall = time.perf_counter()
        for _ in range(steps):
            decoding.step()
        wall = time.perf_counter() - wall
    events = prof.key_averages()
    calls = Counter({event.key: event.count for event in events})
    # operators called by other operators (aten::linear -> aten::mm ...) are inside their caller's time:
    # count the top-level ones only, from the events' tree
    top_level = [event for event in prof.events() if event.cpu_parent is None and event.name.startswith("aten::")]
    own_us = sum(event.cpu_time_total for event in top_level)
    by_shape = prof.key_averages(group_by_input_shape=True)
    top = sorted(by_shape, key=lambda event: event.self_cpu_time_total, reverse=True)[:15]
    return {
        "operator_calls_per_step": len(top_level) / steps,
        "operator_calls_per_layer": len(top_level) / steps / layers,
        "all_calls_per_step": sum(calls.values()) / steps,
        "operators_share_of_step": own_us / 1e6 / wall,
        "top_operators": [
            {
                "name": event.key,
                "shapes": str(event.input_shapes)[:90],
                "calls_per_step": event.count / steps,
                "self_ms_per_step": event.self_cpu_time_total / 1000 / steps,
                "share": event.self_cpu_time_total / 1e6 / wall,
            }
            for event in top
        ],
        "top_level_by_name": Counter(event.name for event in top_level).most_common(25),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="the git revision whose runner is 'before'")
    parser.add_argument("--long-tokens", type=int, default=0, help="a conversation about this long before the question")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=DEFAULT_MODEL_ALIAS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = Settings().model
    loaded = load_serving_model(
        args.model, cache_dir=settings.cache_dir, device="cpu", cpu_weights=settings.cpu_weights
    )
    model = loaded.model
    layers = model.config.num_hidden_layers
    prompt = chat_prompt(loaded, 0, args.long_tokens)
    revision = revision_of(args.baseline)
    options: dict[str, Any] = {"device": loaded.device, "context_length": loaded.context_length, "prefix_cache_mib": 0}
    result: dict[str, Any] = {"variants": {}}
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        before = baseline_module(revision, Path(folder), "runner").ModelRunner(model, **options)
        generic = ModelRunner(model, **options, lean=False)  # this tree's runner, on transformers' forward pass
        variants = {
            f"before ({revision})": Decoding(before, prompt, 10_000),
            "generic forward": Decoding(generic, prompt, 10_000),
            "lean decode": Decoding(ModelRunner(model, **options), prompt, 10_000),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        loads = []
        for decoding in variants.values():
            cpu_ms_per_step(decoding, 3)
        for round_ in range(args.rounds):
            names = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in names:
                times[name].append(cpu_ms_per_step(variants[name], args.steps))
            loads.append(os.getloadavg()[0])
        for name, decoding in variants.items():
            result["variants"][name] = {
                "cpu_ms_per_step_median": statistics.median(times[name]),
                "cpu_ms_per_step": times[name],
                "profile": profiled(decoding, args.steps, layers),
                "load_1min_after_profile": os.getloadavg()[0],
            }
    result |= {
        "model": args.model,
        "dtype": str(loaded.dtype),
        "cpu_weights": settings.cpu_weights,
        "prompt_tokens": len(prompt),
        "threads": args.threads,
        "load_1min_per_round": loads,
        "torch": torch.__version__,
    }
    for name, variant in result["variants"].items():
        profile_ = variant["profile"]
        calls = profile_["operator_calls_per_step"]
        print(
            f"{name:24s} CPU {variant['cpu_ms_per_step_median']:6.2f} ms/step  "
            f"{calls:6.0f} operator calls/step ({calls / layers:.0f}/layer)  "
            f"operators' own time {100 * profile_['operators_share_of_step']:.0f}% of the step"
        )
        for top in profile_["top_operators"][:10]:
            print(
                f"    {top['name']:48s} {top['calls_per_step']:5.0f}/step {top['self_ms_per_step']:7.2f} ms "
                f"{100 * top['share']:4.0f}%  {top['shapes']}"
            )
    print(f"load average (1 min) per round: {min(loads):.1f} to {max(loads):.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
