"""What each CPU weight format costs in quality: perplexity on held-out text against float32.

A format may be on by default only if its perplexity stays within 1 % of float32's (``model.cpu_weights``
``auto`` picks bfloat16 on CPUs with bfloat16 instructions, and the 4-bit copies of weights that already
are 4-bit values, on this evidence). The 4-bit weights serve only decoding steps of a few rows; here they
serve every product, so that what is measured is theirs; "int4" is 4-bit layers and an 8-bit output
layer, what ``auto`` serves the default model with. The text is prose the
model did not see in this form (the tiny Shakespeare corpus shipped beside the project, its last part),
cut into windows of ``--window`` tokens. Run from the repository root:

    python -m bench.weights                    # float32, bfloat16 and int4, 16 windows of 512 tokens

Prints a table and writes bench/results/weights.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from brain.engine import cpu_linear  # noqa: E402
from brain.engine.cpu_linear import cpu_has_bf16, int4_available  # noqa: E402
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS, load_serving_model  # noqa: E402
from brain.settings import Settings  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "weights.json"
TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
LIMIT = 0.01  # relative perplexity increase allowed for a format that is on by default


def perplexity(model: torch.nn.Module, windows: list[list[int]]) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            ids = torch.tensor([window])
            logits = model(input_ids=ids).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            count += len(window) - 1
    return math.exp(total / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL_ALIAS)
    parser.add_argument("--text", type=Path, default=TEXT)
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console(width=100)
    cache_dir = Settings().model.cache_dir
    formats = ["float32", "bfloat16"] + (["int4"] if int4_available() else [])
    cpu_linear.INT4_MAX_ROWS = 1 << 30  # every product through the 4-bit weights where a layer has them
    results = {}
    windows: list[list[int]] = []
    for name in formats:
        loaded = load_serving_model(args.model, cache_dir=cache_dir, device="cpu", cpu_weights=name)
        if not windows:
            text = args.text.read_text()
            ids = loaded.tokenizer.encode(text[-len(text) // 10 :])  # the last tenth: held out from any split
            windows = [ids[i * args.window : (i + 1) * args.window] for i in range(args.windows)]
        results[name] = perplexity(loaded.model, windows)
        console.log(f"{name}: perplexity {results[name]:.4f}")
    base = results["float32"]
    table = Table(title=f"Perplexity on held-out text, {args.model}, {args.windows} x {args.window} tokens")
    for column in ("weights", "perplexity", "vs float32", f"within {LIMIT:.0%}"):
        table.add_column(column, justify="right")
    rows = []
    for name, value in results.items():
        change = value / base - 1
        rows.append({"weights": name, "perplexity": value, "change": change, "within_limit": abs(change) <= LIMIT})
        table.add_row(name, f"{value:.4f}", f"{change:+.3%}", "yes" if abs(change) <= LIMIT else "no")
    console.print(table)
    result = {
        "model": args.model,
        "rows": rows,
        "cpu_has_bf16": cpu_has_bf16(),
        "int4_available": int4_available(),
        "tokens": args.windows * args.window,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
