"""Canary rollout: a community candidate that passed the gate first serves a share of opted-in members
(sticky: a hash of the member's id decides, see brain/adapters.py), and members' ratings decide its fate.

Each nightly run (and `trainer canary check`) compares the canary's like-rate with the live version's over
the same period (the live version's counters are noted when the canary starts), by a one-sided
two-proportion z-test with the pooled proportion:

- rolled back as soon as its like-rate is significantly below live's (p < canary.level);
- promoted as soon as it is significantly above live's (the upper tail, p < canary.level) with at least half
  of canary.min_ratings: members plainly prefer it, and waiting for the rest would cost a night of training;
- promoted for everyone once it has canary.min_ratings ratings and is not significantly worse, or once it
  has served canary.max_wait_s without reaching them (the gate vouched for it, and no member's ratings
  say otherwise); one the gate could not tell from live (``members_decide``) must also be liked at least as
  well as live, else it is rolled back;
- otherwise it keeps serving, and the community target is not trained again meanwhile.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel

from brain.adapters import adapter_name
from brain.feedback_records import Canary
from brain.store.ratings import BASE
from trainer.nightly.lock import TrainerLock
from trainer.nightly.registry import Registry, now_iso
from trainer.nightly.stats import lower_tail_z
from trainer.settings import CanarySettings

CanaryAction = Literal["started", "waiting", "promoted", "rolled back"]


class CanaryFigures(BaseModel):
    """A canary against the live version, counted over the canary's time."""

    name: str
    likes: int
    dislikes: int
    live: str  # the live version's name ("base": the base model)
    live_likes: int
    live_dislikes: int
    age_s: float
    z: float | None = None
    p_value: float | None = None  # of "the canary's like-rate is below live's"

    @property
    def ratings(self) -> int:
        return self.likes + self.dislikes

    @property
    def like_rate(self) -> float | None:
        return self.likes / self.ratings if self.ratings else None

    @property
    def live_like_rate(self) -> float | None:
        total = self.live_likes + self.live_dislikes
        return self.live_likes / total if total else None


class CanaryDecision(BaseModel):
    target: str
    version: int
    action: CanaryAction
    reason: str
    share: float
    min_ratings: int
    level: float
    figures: CanaryFigures | None = None


def _live_name(registry: Registry, target: str) -> tuple[str, int]:
    record = registry.live(target)
    return (record.name, record.version) if record else (BASE, 0)


def start(
    registry: Registry,
    target: str,
    version: int,
    settings: CanarySettings,
    *,
    run: str,
    metrics: dict,
    members_decide: bool = False,
) -> CanaryDecision:
    """Serve ``version`` (already in the registry) to the canary's share of opted-in members."""
    live, live_version = _live_name(registry, target)
    counts = registry.link.call(registry.store.ratings.like_counts())
    likes, dislikes = counts.get(live, (0, 0))
    canary = Canary(
        target=target,
        version=version,
        name=adapter_name(target, version),
        path=f"{target}/v{version}",
        share=settings.share,
        min_ratings=settings.min_ratings,
        started_at=now_iso(),
        run=run,
        # where live's counters stood: the canary is compared with what live collected since
        metrics={**metrics, "live_version": float(live_version), "live_likes": float(likes),
                 "live_dislikes": float(dislikes)},
        members_decide=members_decide,
    )  # fmt: skip
    registry.link.call(registry.store.canaries.set(canary))
    reason = (
        f"{canary.name} serves {settings.share:.0%} of opted-in members as a canary until it has "
        f"{settings.min_ratings} ratings; rolled back if its like-rate falls significantly below {live}'s "
        f"(one-sided two-proportion z-test, p < {settings.level})"
        + (", or is below it at the end (the gate could not tell them apart)" if members_decide else "")
    )
    return CanaryDecision(
        target=target, version=version, action="started", reason=reason, share=settings.share,
        min_ratings=settings.min_ratings, level=settings.level,
    )  # fmt: skip


def figures(registry: Registry, canary: Canary) -> CanaryFigures:
    counts = registry.link.call(registry.store.ratings.like_counts())
    likes, dislikes = counts.get(canary.name, (0, 0))
    live, live_version = _live_name(registry, canary.target)
    live_likes, live_dislikes = counts.get(live, (0, 0))
    if live_version == canary.metrics.get("live_version"):  # the same live version: count only since the start
        live_likes = max(0, live_likes - int(canary.metrics.get("live_likes") or 0))
        live_dislikes = max(0, live_dislikes - int(canary.metrics.get("live_dislikes") or 0))
    started = datetime.fromisoformat(canary.started_at)
    test = lower_tail_z(likes, likes + dislikes, live_likes, live_likes + live_dislikes)
    return CanaryFigures(
        name=canary.name, likes=likes, dislikes=dislikes, live=live, live_likes=live_likes,
        live_dislikes=live_dislikes, age_s=(datetime.now(timezone.utc) - started).total_seconds(),
        z=test.z if test else None, p_value=test.p_value if test else None,
    )  # fmt: skip


def check(registry: Registry, target: str, settings: CanarySettings, *, lock: TrainerLock) -> CanaryDecision | None:
    """Decide the target's running canary, if it has one: promote, roll back, or let it go on."""
    canary = registry.link.call(registry.store.canaries.get(target))
    if canary is None:
        return None
    decision = judge(registry, canary, settings)
    if decision.action == "waiting":
        return decision
    if decision.action == "promoted":
        registry.promote(target, canary.version, lock=lock)
    lock.check()
    registry.link.call(registry.store.canaries.clear(target))
    return decision


def judge(registry: Registry, canary: Canary, settings: CanarySettings) -> CanaryDecision:
    """What a check would decide now, changing nothing (the dashboard shows it as the test's current verdict)."""
    target = canary.target
    seen = figures(registry, canary)
    decision = CanaryDecision(
        target=target, version=canary.version, action="waiting", reason="", share=canary.share,
        min_ratings=canary.min_ratings, level=settings.level, figures=seen,
    )  # fmt: skip
    rate = f"{seen.like_rate:.1%}" if seen.like_rate is not None else "-"
    live_rate = f"{seen.live_like_rate:.1%}" if seen.live_like_rate is not None else "-"
    said = (
        f"{canary.name}: {seen.likes} likes of {seen.ratings} ratings ({rate}) against {seen.live}'s "
        f"{seen.live_likes} of {seen.live_likes + seen.live_dislikes} ({live_rate})"
    )
    test = f"z = {seen.z:.2f}, p = {seen.p_value:.3f}" if seen.z is not None and seen.p_value is not None else "no test"
    worse = seen.p_value is not None and seen.p_value < settings.level
    # the gate could not rank it above live: at the end, members must like it at least as well
    liked_less = (
        canary.members_decide
        and seen.like_rate is not None
        and seen.live_like_rate is not None
        and seen.like_rate < seen.live_like_rate
    )
    due = seen.ratings >= canary.min_ratings or seen.age_s >= settings.max_wait_s
    # the upper tail: the evidence that its like-rate is above live's
    above = 1 - seen.p_value if seen.p_value is not None else None
    better = above is not None and above < settings.level and 2 * seen.ratings >= canary.min_ratings
    if canary.version not in registry.versions(target):
        decision.action, decision.reason = "rolled back", f"{said}; its directory is gone from the registry"
    elif worse:
        decision.action = "rolled back"
        decision.reason = f"{said}: significantly worse ({test} < {settings.level})"
    elif better:
        decision.action = "promoted"
        decision.reason = (
            f"{said}: significantly better ({test}; p = {above:.3f} of not being above < {settings.level}) "
            f"with {seen.ratings} of the {canary.min_ratings} ratings needed"
        )
    elif due and liked_less:
        decision.action = "rolled back"
        decision.reason = f"{said}: liked less than live, and the gate could not tell them apart ({test})"
    elif seen.ratings >= canary.min_ratings:
        decision.action = "promoted"
        decision.reason = f"{said}: {seen.ratings} ratings of the {canary.min_ratings} needed, not worse ({test})"
    elif seen.age_s >= settings.max_wait_s:
        decision.action = "promoted"
        decision.reason = (
            f"{said}: served {seen.age_s / 3600:.0f} h with {seen.ratings} of the {canary.min_ratings} ratings "
            f"needed and is not significantly worse ({test})"
        )
    else:
        decision.reason = f"{said}: {seen.ratings} of the {canary.min_ratings} ratings needed ({test})"
    return decision
