"""Wall time and peak memory of `trainer nightly` with the default model on CPU, for growing logs.

For each size, a fresh redis-server gets that many opted-in turns of chatterbot-corpus conversations
(held-out general-set categories excluded): two regular users with 15% of the chats each (each gets an
adapter of their own once they pass trainer.min_user_turns) and occasional users with the rest. Then
`trainer nightly` runs in a subprocess with the default settings, except a bound on the optimizer steps
per target so that the run stays bounded. Prints a table and writes bench/results/nightly.json.

    python bench/nightly.py                      # 200, 1,000 and 5,000 turns
    python bench/nightly.py --sizes 5000      # adds to earlier results with the same step bound
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from brain.redis_local import LocalRedis
from brain.store import Store
from brain.store.client import connect
from trainer.nightly.corpus import community_chats, log_chats
from trainer.nightly.report import read_report

RESULTS = Path(__file__).parent / "results" / "nightly.json"


async def seed(redis_url: str, turns: int, general: list[str]) -> dict[str, int]:
    chats = community_chats(turns, exclude=general)
    cut = int(len(chats) * 0.3)
    occasional = max(1, turns // 40)
    store = Store(connect(redis_url))
    try:
        await log_chats(store, chats[:cut], users=2, consent="bench")
        await log_chats(store, chats[cut:], users=occasional, consent="bench", first=2)
    finally:
        await store.close()
    return {"regular_users": 2, "occasional_users": occasional}


def run_trainer(config: Path) -> tuple[float, int, int]:
    """Wall seconds, peak resident memory (MiB) and exit status of one `trainer nightly`."""
    trainer = str(Path(sys.executable).with_name("trainer"))
    env = {**os.environ, "OWNCHAT_CONFIG": str(config), "OMP_WAIT_POLICY": "PASSIVE"}
    started = time.perf_counter()
    process = subprocess.Popen([trainer, "nightly"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)


def bench_size(turns: int, max_steps: int, work: Path) -> dict:
    redis = LocalRedis(work / "redis").start()
    try:
        users = asyncio.run(seed(redis.url, turns, []))  # the general guard is prose, not corpus categories
        config = {
            "redis": {"url": redis.url},
            "trainer": {
                "runs_dir": str(work / "runs"),
                "registry_dir": str(work / "registry"),
                "finetune": {"max_steps": max_steps},
            },
        }
        path = work / "ownchat.yaml"
        path.write_text(yaml.safe_dump(config))
        wall_s, peak_mib, status = run_trainer(path)
    finally:
        redis.stop()
    reports = sorted((work / "runs").glob("*/report.json"))
    report = read_report(reports[-1].parent) if reports else None
    targets = report.targets if report else []
    community = report.outcome("community") if report else None
    return {
        "turns": turns,
        **users,
        "exit_status": status,
        "run_status": report.status if report else None,
        "kept_turns": report.clean.kept if report and report.clean else None,
        "targets_trained": sum(1 for t in targets if t.finetune),
        "promoted": sum(1 for t in targets if t.status == "promoted"),
        "steps": sum(t.finetune.steps for t in targets if t.finetune),
        "community": community.scores.model_dump(mode="json") if community and community.scores else None,
        "wall_s": round(wall_s, 1),
        "peak_rss_mib": peak_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--max-steps", type=int, default=20, help="optimizer steps per target, at most")
    args = parser.parse_args()

    console = Console()
    rows = []
    for turns in args.sizes:
        console.print(f"nightly on {turns} turns ...")
        with tempfile.TemporaryDirectory(prefix="nightly-bench-") as work:
            rows.append(bench_size(turns, args.max_steps, Path(work)))
        console.print(rows[-1])

    # sizes measured earlier with the same step bound stay, so that sizes can be run one at a time
    earlier = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if earlier.get("max_steps") == args.max_steps:
        rows = [r for r in earlier.get("runs", []) if r["turns"] not in args.sizes] + rows
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}
    runs = sorted(rows, key=lambda r: r["turns"])
    RESULTS.write_text(json.dumps({"max_steps": args.max_steps, **meta, "runs": runs}, indent=2) + "\n")
    table = Table(
        title=f"trainer nightly, default model, CPU ({os.cpu_count()} cores), <= {args.max_steps} steps/target"
    )
    for column in ("turns", "kept", "targets", "promoted", "steps", "base ppl", "candidate ppl", "wall s", "peak MiB"):
        table.add_column(column, justify="right")
    for row in runs:
        scores = row["community"] or {}
        table.add_row(
            str(row["turns"]),
            str(row["kept_turns"]),
            str(row["targets_trained"]),
            str(row["promoted"]),
            str(row["steps"]),
            f"{scores['base']['test_ppl']:.2f}" if scores else "-",
            f"{scores['candidate']['test_ppl']:.2f}" if scores else "-",
            f"{row['wall_s']:.0f}",
            str(row["peak_rss_mib"]),
        )
    console.print(table)
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
