"""The run's report: JSON in the run directory (written by run.py), a table in the terminal, and a PNG with
each target's loss curves and its evaluation history over the runs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PLOT = "report.png"
STATUS_STYLE = {"promoted": "green", "kept": "yellow", "skipped": "dim", "failed": "red"}


def _ppl(scores: dict[str, Any], who: str, key: str = "test_ppl") -> str:
    value = scores.get(who, {}).get(key)
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def print_report(report: dict[str, Any], console: Console) -> None:
    export, clean = report.get("export", {}), report.get("clean", {})
    console.print(
        f"[bold]nightly run {report['run']}[/] {report['status']}: {export.get('entries', 0)} log entries of "
        f"{export.get('users', 0)} users; kept {clean.get('kept', 0)} turns, dropped {clean.get('dropped', {})}, "
        f"scrubbed {export.get('scrubbed', clean.get('scrubbed', {}))}"
    )
    table = Table(title="targets", caption="perplexity on the test split; general: on the general set")
    for column in ("target", "turns", "steps", "base", "live", "candidate", "general", "BLEU / chrF", "status"):
        table.add_column(column, justify="left" if column in ("target", "status") else "right")
    for outcome in report.get("targets", []):
        scores, tune = outcome.get("scores", {}), outcome.get("finetune", {})
        style = STATUS_STYLE.get(outcome["status"], "")
        table.add_row(
            outcome["target"],
            str(outcome.get("turns", 0)),
            f"{tune['steps']}/{tune['best_step']}" if tune else "-",
            _ppl(scores, "base"),
            _ppl(scores, "live"),
            _ppl(scores, "candidate"),
            f"{_ppl(scores, 'base', 'general_ppl')} → {_ppl(scores, 'candidate', 'general_ppl')}",
            f"{_ppl(scores, 'candidate', 'bleu')} / {_ppl(scores, 'candidate', 'chrf')}",
            f"[{style}]{outcome['status']}" + (f" v{outcome['version']}" if outcome.get("version") else ""),
        )
    console.print(table)
    for outcome in report.get("targets", []):
        live = outcome.get("scores", {}).get("live", {}).get("name")
        if live:
            console.print(f"  {outcome['target']}: live is {live}")
        for reason in outcome.get("reasons", []):
            console.print(f"  {outcome['target']}: {reason}")
    if report.get("error"):
        console.print(f"[red]{report['error']}")


def write_plot(run_dir: Path, report: dict[str, Any], history: list[dict[str, Any]]) -> Path | None:
    """Loss curves of this run's targets beside their test perplexity over every finished run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = [o for o in report.get("targets", []) if o.get("finetune")]
    if not outcomes:
        return None
    fig, axes = plt.subplots(len(outcomes), 2, figsize=(11, 3.2 * len(outcomes)), squeeze=False)
    for row, outcome in zip(axes, outcomes, strict=True):
        curves = outcome["finetune"].get("history", {})
        train, val = curves.get("train", []), curves.get("val", [])
        row[0].plot([p["step"] for p in train], [p["loss"] for p in train], lw=0.8, alpha=0.7, label="train")
        row[0].plot([p["step"] for p in val], [p["loss"] for p in val], "o-", label="validation")
        row[0].set(title=f"{outcome['target']}: loss", xlabel="step", ylabel="nats per token")
        row[0].legend()
        _eval_history(row[1], outcome["target"], history)
    fig.tight_layout()
    path = run_dir / PLOT
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _eval_history(ax: Any, target: str, history: list[dict[str, Any]]) -> None:
    runs = [
        (datetime.fromisoformat(report["started_at"]).strftime("%m-%d %H:%M"), outcome)
        for report in history
        for outcome in report.get("targets", [])
        if outcome["target"] == target and outcome.get("scores")
    ]
    x = list(range(len(runs)))
    for who, style in (("base", "s--"), ("live", "^-"), ("candidate", "o-")):
        ax.plot(x, [o["scores"][who]["test_ppl"] for _, o in runs], style, label=who)
    promoted = [(i, o["scores"]["candidate"]["test_ppl"]) for i, (_, o) in enumerate(runs) if o["status"] == "promoted"]
    if promoted:
        ax.scatter(*zip(*promoted, strict=True), s=140, facecolors="none", edgecolors="green", label="promoted")
    ax.set_xticks(x, [label for label, _ in runs], rotation=30)
    ax.set(title=f"{target}: test perplexity per run", ylabel="perplexity")
    ax.legend()
