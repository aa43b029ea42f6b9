"""The run's report as PNGs: each trained target's loss curves beside its test perplexity over the runs
(report.png), and members' like-rate per served version and night, with 95 % Wilson intervals (likes.png)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from trainer.nightly.report import RunReport
from trainer.nightly.stats import wilson

PLOT = "report.png"
LIKES_PLOT = "likes.png"


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


class LikeCounted(Protocol):
    """A run's report, or its summary in Redis (brain/operator_records.py): when it began, the counters then."""

    @property
    def started_at(self) -> str: ...

    @property
    def like_counts(self) -> dict[str, tuple[int, int]]: ...


def nightly_likes(history: Sequence[LikeCounted]) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """(run, {version: (likes, dislikes)}) of the ratings given since the run before (each run notes the
    counters as it starts; the first run counts everything before it)."""
    nights = []
    before: dict[str, tuple[int, int]] = {}
    for report in history:
        if not report.like_counts:
            continue
        label = datetime.fromisoformat(report.started_at).strftime("%m-%d %H:%M")
        night = {}
        for name, (likes, dislikes) in report.like_counts.items():
            old_likes, old_dislikes = before.get(name, (0, 0))
            new = (max(0, likes - old_likes), max(0, dislikes - old_dislikes))
            if sum(new):
                night[name] = new
        nights.append((label, night))
        before = report.like_counts
    return nights


def write_like_plot(run_dir: Path, history: list[RunReport]) -> Path | None:
    """Like-rate per served version per night (ratings given since the night before), with Wilson intervals."""
    nights = nightly_likes(history)
    if not any(night for _, night in nights):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    names = sorted({name for _, night in nights for name in night}, key=lambda n: (n != "base", n))
    width = 0.8 / max(1, len(names) + 1)
    series = [(name, {i: night[name] for i, (_, night) in enumerate(nights) if name in night}) for name in names]
    totals = {
        i: (sum(n[0] for n in night.values()), sum(n[1] for n in night.values())) for i, (_, night) in enumerate(nights)
    }
    for offset, (name, points) in enumerate([*series, ("all versions", totals)]):
        points = {i: n for i, n in points.items() if sum(n)}
        if not points:
            continue
        x = [i + (offset - len(series) / 2) * width for i in points]
        rates = [likes / (likes + dislikes) for likes, dislikes in points.values()]
        bounds = [wilson(likes, likes + dislikes) for likes, dislikes in points.values()]
        errors = [
            [r - low for r, (low, _) in zip(rates, bounds, strict=True)],
            [high - r for r, (_, high) in zip(rates, bounds, strict=True)],
        ]
        style = {"fmt": "s-", "color": "black", "lw": 1.5} if name == "all versions" else {"fmt": "o"}
        ax.errorbar(x, rates, yerr=errors, capsize=3, label=name, **style)
    ax.set_xticks(range(len(nights)), [label for label, _ in nights], rotation=30)
    ax.set(title="members' like-rate per version and night (95 % Wilson intervals)", ylabel="likes / ratings")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    path = run_dir / LIKES_PLOT
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
