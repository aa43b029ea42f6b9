"""The run's report: a typed record written as report.json in the run directory, and a table in the terminal.

Every reader goes through RunReport, which refuses a report of another version with a message that says so
(reports are kept for good, so older ones stay on disk beside newer ones). The plot is report_plot.py's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from brain.log_privacy import Aliases, redact
from brain.operator_records import CanaryNote, RunSummary, TargetSummary, thin
from trainer.core.finetuning import FinetuneResult
from trainer.errors import TrainerInputError
from trainer.nightly.canary import CanaryDecision
from trainer.nightly.clean import CleanReport
from trainer.nightly.files import write_json
from trainer.nightly.reward import RepliesJudged, RewardCheck
from trainer.nightly.scoring import Scores
from trainer.settings import CanarySettings, EvaluationSettings, FinetuneSettings, PreferenceSettings

REPORT = "report.json"
# the layout of report.json; a reader refuses any other
REPORT_VERSION = 1
RunStatus = Literal["running", "finished", "failed", "cancelled"]
# canary: passed the gate and serves a share of members until their ratings decide (canary.py)
TargetStatus = Literal["promoted", "canary", "kept", "skipped", "failed"]
STATUS_STYLE = {"promoted": "green", "canary": "cyan", "kept": "yellow", "skipped": "dim", "failed": "red"}


class ReportVersionError(TrainerInputError):
    """A report.json of another layout than this trainer's, or none it can read."""


class ScoreSet(BaseModel):
    base: Scores
    live: Scores  # what served the target's traffic: its live adapter, the community's, or the base model
    candidate: Scores


class Outcome(BaseModel):
    """What became of one target (the community, or one user) in a run."""

    target: str
    status: TargetStatus
    reasons: list[str]
    turns: int = 0
    version: int | None = None  # the registry version it was promoted as
    scores: ScoreSet | None = None
    finetune: FinetuneResult | None = None
    reward_model: RewardCheck | None = None  # the night's reward model, and the best-of-n pairs it made
    replies_judged: RepliesJudged | None = None  # its judgment of the candidate's and live's own replies
    # kept, and left for the next night to go on from (finetune.carry_unproven)
    carried: bool = False
    # where the target's night went, in seconds: "reward model" (training it, drawing and ranking best-of-n
    # replies), "fine-tune", "gate" (scoring base, live and candidate)
    seconds: dict[str, float] = Field(default_factory=dict)


class ExportSummary(BaseModel):
    """The export's manifest, less whom it holds: only how many."""

    entries: int
    users: int
    consent_versions: dict[str, int]
    first_at: str | None
    last_at: str | None
    dropped_after_forget: int = 0
    scrubbed: dict[str, int] = Field(default_factory=dict)
    exported_at: str
    rated_turns: int = 0
    ratings: int = 0
    liked: int = 0
    disliked: int = 0
    ratings_dropped_after_forget: int = 0
    rated_turns_left_out: int = 0


class RunSettings(BaseModel):
    model: str
    finetune: FinetuneSettings
    evaluation: EvaluationSettings
    preference: PreferenceSettings | None = None
    canary: CanarySettings | None = None


class RunReport(BaseModel):
    version: int = REPORT_VERSION
    run: str
    started_at: str
    status: RunStatus = "running"
    finished_at: str | None = None
    purged_targets: int = 0  # a count: a report must not name a forgotten user
    purged_community_versions: list[int] = Field(default_factory=list)
    purged_runs: list[str] = Field(default_factory=list)
    redacted_reports: list[str] = Field(default_factory=list)
    # earlier runs killed after their report: the plots this run drew for them
    repaired_plots: list[str] = Field(default_factory=list)
    persistence: str | None = None  # what became of Redis's append-only file after a /forget
    export: ExportSummary | None = None
    clean: CleanReport | None = None
    targets: list[Outcome] = Field(default_factory=list)
    # the running canary's fate, decided at the start of the run, and a canary the run started
    canary_check: CanaryDecision | None = None
    canary_started: CanaryDecision | None = None
    # members' likes and dislikes so far per served version (community versions and the base model)
    like_counts: dict[str, tuple[int, int]] = Field(default_factory=dict)
    rating_splits: dict[str, int] = Field(default_factory=dict)  # rated turns per split
    error: str | None = None
    settings: RunSettings | None = None

    def outcome(self, target: str) -> Outcome | None:
        return next((o for o in self.targets if o.target == target), None)


def summarize(report: RunReport) -> RunSummary:
    """The report as the dashboard reads it from Redis: figures and reasons, the loss curves thinned."""

    def note(decision: CanaryDecision | None) -> CanaryNote | None:
        if decision is None:
            return None
        return CanaryNote(
            target=decision.target, version=decision.version, action=decision.action, reason=decision.reason
        )

    targets = []
    for outcome in report.targets:
        scores, tune = outcome.scores, outcome.finetune
        summary = TargetSummary(
            target=outcome.target, status=outcome.status, reasons=outcome.reasons, turns=outcome.turns,
            version=outcome.version,
        )  # fmt: skip
        if scores is not None:
            right = [i for i, ok in enumerate(scores.base.answers_right) if ok]
            kept = [i for i in right if i < len(scores.candidate.answers_right) and scores.candidate.answers_right[i]]
            summary = summary.model_copy(
                update=dict(
                    base_ppl=scores.base.test_ppl,
                    live_ppl=scores.live.test_ppl,
                    candidate_ppl=scores.candidate.test_ppl,
                    live_name=scores.live.name,
                    base_general_ppl=scores.base.general_ppl,
                    candidate_general_ppl=scores.candidate.general_ppl,
                    questions_kept=len(kept) if right else None,
                    questions_right=len(right) if right else None,
                    reward_auc=scores.candidate.reward_auc,
                    live_reward_auc=scores.live.reward_auc,
                )  # fmt: skip
            )
        if tune is not None:
            curves = {
                name: [(int(step), float(loss)) for step, loss in points if math.isfinite(loss)]
                for name, points in tune.history.items()
            }
            summary = summary.model_copy(
                update=dict(
                    steps=tune.steps,
                    best_step=tune.best_step,
                    train_loss=thin(curves.get("train", [])),
                    val_loss=thin(curves.get("val", [])),
                )  # fmt: skip
            )
        targets.append(summary)
    export, clean = report.export, report.clean
    return RunSummary(
        run=report.run, started_at=report.started_at, finished_at=report.finished_at, status=report.status,
        error=report.error, log_entries=export.entries if export else 0, users=export.users if export else 0,
        kept_turns=clean.kept if clean else 0, ratings=export.ratings if export else 0,
        rated_turns=export.rated_turns if export else 0, purged_targets=report.purged_targets, targets=targets,
        canary_check=note(report.canary_check), canary_started=note(report.canary_started),
        like_counts=report.like_counts,
    )  # fmt: skip


def write_report(run_dir: Path, report: RunReport) -> None:
    write_json(run_dir / REPORT, report.model_dump(mode="json"))


def parse_report(data: Any, source: Path | str) -> RunReport:
    """A report read from JSON, if it is of this trainer's version."""
    version = data.get("version", 0) if isinstance(data, dict) else None
    if version != REPORT_VERSION:
        written = "before reports carried a version" if version == 0 else f"in version {version}"
        raise ReportVersionError(
            f"{source} is a report written {written}; this trainer reads version {REPORT_VERSION} only"
        )
    try:
        return RunReport.model_validate(data)
    except ValidationError as error:
        raise ReportVersionError(f"{source} is not a readable version-{REPORT_VERSION} report: {error}") from None


def read_report(run_dir: Path) -> RunReport:
    path = run_dir / REPORT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportVersionError(f"{path} cannot be read: {error}") from None
    return parse_report(data, path)


def _ppl(scores: ScoreSet | None, who: str, key: str = "test_ppl") -> str:
    value = getattr(getattr(scores, who), key) if scores is not None else None
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _auc(scores: ScoreSet | None) -> str:
    if scores is None or scores.candidate.reward_auc is None:
        return "-"
    live = scores.live.reward_auc
    said = f"{live if live is not None else 0.5:.2f} → {scores.candidate.reward_auc:.2f}"
    pairs = scores.candidate.pair_accuracy
    if pairs is not None:
        live_pairs = scores.live.pair_accuracy
        said += f"; pairs {live_pairs if live_pairs is not None else 0.5:.0%} → {pairs:.0%}"
    return said


def _questions(scores: ScoreSet | None) -> str:
    if scores is None or not scores.base.answers_right:
        return "-"
    right = [i for i, ok in enumerate(scores.base.answers_right) if ok]
    kept = sum(1 for i in right if i < len(scores.candidate.answers_right) and scores.candidate.answers_right[i])
    return f"{kept}/{len(right)}"


TARGET_COLUMNS = ("target", "turns", "steps", "base", "live", "candidate", "prose", "AUC", "questions", "status")
TARGETS_CAPTION = (
    "perplexity on the test split; prose: the general guard's; AUC: liked above disliked on held-out ratings, "
    "live → candidate (pairs: of a liked and a disliked reply to one prompt, the share put right); questions: the "
    "base model's right answers the candidate keeps"
)


def _target_row(outcome: Outcome) -> dict[str, str]:
    scores, tune = outcome.scores, outcome.finetune
    style = STATUS_STYLE.get(outcome.status, "")
    values = (
        outcome.target,
        str(outcome.turns),
        f"{tune.steps}/{tune.best_step}" if tune else "-",
        _ppl(scores, "base"),
        _ppl(scores, "live"),
        _ppl(scores, "candidate"),
        f"{_ppl(scores, 'base', 'general_ppl')} → {_ppl(scores, 'candidate', 'general_ppl')}",
        _auc(scores),
        _questions(scores),
        f"[{style}]{outcome.status}[/]" + (f" v{outcome.version}" if outcome.version else ""),
    )
    return dict(zip(TARGET_COLUMNS, values, strict=True))


def print_report(report: RunReport, console: Console) -> None:
    """The run's summary, for the console: members' targets by an alias of this run (``member-1``…), never by the
    hash their adapter is named by (report.json keeps the names; the trainer's log at DEBUG says which is which)."""
    aliases = Aliases()
    export, clean = report.export, report.clean
    dropped = clean.dropped if clean else {}
    scrubbed = export.scrubbed if export else (clean.scrubbed if clean else {})
    console.print(
        f"[bold]nightly run {report.run}[/] {report.status}: {export.entries if export else 0} log entries of "
        f"{export.users if export else 0} users; kept {clean.kept if clean else 0} turns, dropped {dropped}, "
        f"scrubbed {scrubbed}"
    )
    if export and export.rated_turns:
        console.print(
            f"ratings: {export.ratings} on {export.rated_turns} turns ({export.liked} liked, {export.disliked} "
            f"disliked on balance); rated turns per split {report.rating_splits}"
        )
    if report.canary_check is not None:
        console.print(f"canary {report.canary_check.action}: {report.canary_check.reason}")
    rows = [{**_target_row(outcome), "target": redact(outcome.target, aliases)} for outcome in report.targets]
    table = Table(title="targets", caption=TARGETS_CAPTION)
    for column in TARGET_COLUMNS:
        table.add_column(column, justify="left" if column in ("target", "status") else "right")
    for row in rows:
        table.add_row(*row.values())
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if not rows or natural <= console.width:
        console.print(table)
    else:
        # a terminal too narrow for ten columns would cut names and statuses short ("commu…"): one block per target
        console.print("[bold]targets[/]")
        for outcome, row in zip(report.targets, rows, strict=True):
            steps = f", steps {row['steps']}" if outcome.finetune else ""
            console.print(f"  [bold]{row['target']}[/]  {row['status']}  {row['turns']} turns{steps}")
            if outcome.scores is not None:
                console.print(f"    test ppl: base {row['base']}, live {row['live']}, candidate {row['candidate']}")
                console.print(f"    prose {row['prose']}; AUC {row['AUC']}; questions {row['questions']}")
        console.print(TARGETS_CAPTION, style="dim")
    for outcome in report.targets:
        target = redact(outcome.target, aliases)
        if outcome.scores is not None:
            console.print(f"  {target}: live is {redact(outcome.scores.live.name, aliases)}")
        for reason in outcome.reasons:
            console.print(f"  {target}: {redact(reason, aliases)}")
        if outcome.seconds:
            spent = ", ".join(f"{phase} {seconds:,.0f} s" for phase, seconds in outcome.seconds.items())
            console.print(f"  {target}: took {spent}", style="dim")
        if outcome.finetune is not None and outcome.finetune.continued_from:
            console.print(f"  {target}: continued {redact(outcome.finetune.continued_from, aliases)}", style="dim")
    if report.error:
        console.print(f"[red]{redact(report.error, aliases)}")
