"""The records behind the operator's dashboard, typed: what a nightly run leaves in Redis for it, what the
dashboard's actions note there, and the schedule's pause flag.

``trainer nightly`` writes a RunSummary at the end of every run (trainer/nightly/report.py makes it from the
report); the brain's dashboard (brain/dashboard/) reads them, writes an AuditRecord per action and the
SchedulePause that ``trainer schedule`` obeys. brain/store/ stores them under the keys it names. They carry
``format`` like the registry's records (brain/registry_records.py). None of them names a member: counts only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from brain.registry_records import RegistryRecord

# a loss curve is cut down to about this many points before it is stored: enough to draw, small in Redis
CURVE_POINTS = 200


class TargetSummary(RegistryRecord):
    """What became of one target in a run: the gate's decision and reasons, the guard, the loss curves."""

    target: str
    status: str  # promoted, canary, kept, skipped, failed (trainer/nightly/report.py's TargetStatus)
    reasons: list[str] = Field(default_factory=list)
    turns: int = 0
    version: int | None = None
    # perplexity on the target's test split: base model, what served it, the candidate
    base_ppl: float | None = None
    live_ppl: float | None = None
    candidate_ppl: float | None = None
    live_name: str | None = None
    # the general guard: perplexity of general prose, base and candidate; the base model's right answers kept
    base_general_ppl: float | None = None
    candidate_general_ppl: float | None = None
    questions_kept: int | None = None
    questions_right: int | None = None
    reward_auc: float | None = None
    live_reward_auc: float | None = None
    steps: int | None = None
    best_step: int | None = None
    # (step, loss) pairs, thinned to about CURVE_POINTS
    train_loss: list[tuple[int, float]] = Field(default_factory=list)
    val_loss: list[tuple[int, float]] = Field(default_factory=list)


class CanaryNote(RegistryRecord):
    """A canary decision of a run: started, waiting, promoted or rolled back, and why."""

    target: str
    version: int
    action: str
    reason: str


class RunSummary(RegistryRecord):
    """A nightly run's report, summed up for the dashboard (``oc:runs``, newest first)."""

    run: str
    started_at: str
    finished_at: str | None = None
    status: str
    error: str | None = None
    log_entries: int = 0
    users: int = 0  # how many, never who
    kept_turns: int = 0
    ratings: int = 0
    rated_turns: int = 0
    purged_targets: int = 0
    targets: list[TargetSummary] = Field(default_factory=list)
    canary_check: CanaryNote | None = None
    canary_started: CanaryNote | None = None
    # likes and dislikes per served version as the run began (the like-rate over nights is their difference)
    like_counts: dict[str, tuple[int, int]] = Field(default_factory=dict)


OperatorAction = Literal["login", "rollback", "canary", "pause", "resume"]


class AuditRecord(RegistryRecord):
    """One operator action through the dashboard, and how it ended (``oc:audit``, newest first)."""

    action: OperatorAction
    at: str
    ok: bool
    target: str | None = None
    detail: str  # what was asked and what happened, in a sentence
    client: str | None = None  # the address the request came from


class SchedulePause(RegistryRecord):
    """Set while an operator has paused the nightly schedule (``oc:trainer:paused``); ``trainer schedule``
    skips its runs until it is gone. ``trainer nightly`` by hand still runs."""

    at: str
    reason: str = ""


def thin(points: list[tuple[int, float]], most: int = CURVE_POINTS) -> list[tuple[int, float]]:
    """Every n-th point, the last always kept, so that a long curve keeps its shape in ``most`` points."""
    if len(points) <= most:
        return list(points)
    step = -(-len(points) // most)
    kept = points[::step]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]
