"""The run's report as a PNG: each trained target's loss curves beside its test perplexity over the runs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from trainer.nightly.report import RunReport

PLOT = "report.png"


def write_plot(run_dir: Path, report: RunReport, history: list[RunReport]) -> Path | None:
    """Loss curves of this run's targets beside their test perplexity over every run in ``history``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [(o.target, o.finetune.history) for o in report.targets if o.finetune is not None]
    if not trained:
        return None
    fig, axes = plt.subplots(len(trained), 2, figsize=(11, 3.2 * len(trained)), squeeze=False)
    for row, (target, curves) in zip(axes, trained, strict=True):
        train, val = curves.get("train", []), curves.get("val", [])
        row[0].plot([step for step, _ in train], [loss for _, loss in train], lw=0.8, alpha=0.7, label="train")
        row[0].plot([step for step, _ in val], [loss for _, loss in val], "o-", label="validation")
        row[0].set(title=f"{target}: loss", xlabel="step", ylabel="nats per token")
        row[0].legend()
        _eval_history(row[1], target, history)
    fig.tight_layout()
    path = run_dir / PLOT
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _eval_history(ax: Any, target: str, history: list[RunReport]) -> None:
    runs = [
        (datetime.fromisoformat(report.started_at).strftime("%m-%d %H:%M"), outcome.status, outcome.scores)
        for report in history
        for outcome in report.targets
        if outcome.target == target and outcome.scores is not None
    ]
    x = list(range(len(runs)))
    for who, style in (("base", "s--"), ("live", "^-"), ("candidate", "o-")):
        ax.plot(x, [getattr(scores, who).test_ppl for _, _, scores in runs], style, label=who)
    promoted = [(i, scores.candidate.test_ppl) for i, (_, status, scores) in enumerate(runs) if status == "promoted"]
    if promoted:
        ax.scatter(*zip(*promoted, strict=True), s=140, facecolors="none", edgecolors="green", label="promoted")
    ax.set_xticks(x, [label for label, _, _ in runs], rotation=30)
    ax.set(title=f"{target}: test perplexity per run", ylabel="perplexity")
    ax.legend()
