"""What the dashboard's views show, gathered from Redis, the registry and the brain's own metrics.

The learning view reads the run summaries that nightly runs leave in Redis (brain/operator_records.py), the
members' like counters, the registry's live records and the running canary, whose current verdict is the one a
`trainer canary check` would reach now (trainer/nightly/canary.py's ``judge``, which changes nothing). Members:
counts only. Serving: this brain's Prometheus metrics, read from its own registry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry

from brain.adapters import COMMUNITY
from brain.operator_records import RunSummary
from brain.settings import Settings
from brain.store import Store

WEEK_S = 7 * 24 * 3600
NIGHTS_SHOWN = 14


def like_series(summaries: list[RunSummary], now: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """Per night (ratings given since the run before) and since the last run: each served version's likes,
    dislikes, like-rate and 95 % Wilson interval, as likes.png draws them."""
    from trainer.nightly.report_plot import nightly_likes
    from trainer.nightly.stats import wilson

    history = sorted(summaries, key=lambda s: s.started_at)
    nights = nightly_likes(history)
    last = history[-1].like_counts if history else {}
    since: dict[str, tuple[int, int]] = {}
    for name, (likes, dislikes) in now.items():
        before = last.get(name, (0, 0))
        new = (max(0, likes - before[0]), max(0, dislikes - before[1]))
        if sum(new):
            since[name] = new
    nights.append(("now" if history else "so far", since))
    series = []
    for label, night in nights:
        versions = []
        for name, (likes, dislikes) in sorted(night.items(), key=lambda item: (item[0] != "base", item[0])):
            low, high = wilson(likes, likes + dislikes)
            versions.append(
                {"version": name, "likes": likes, "dislikes": dislikes, "rate": likes / (likes + dislikes),
                 "low": low, "high": high}
            )  # fmt: skip
        series.append({"label": label, "versions": versions})
    return series


def registry_view(settings: Settings) -> dict[str, Any]:
    """The versions on disk of every target (what a rollback can go to), and the community's running canary
    with the test's verdict now. Runs in a worker thread: it reads the registry's directories and drives a
    Redis link of its own, as the trainer does."""
    from trainer.nightly import canary
    from trainer.nightly.link import RedisLink
    from trainer.nightly.registry import Registry

    with RedisLink.from_settings(settings) as link:
        registry = Registry(settings.trainer.registry_dir, link, settings.trainer.keep_versions)
        versions = {target: registry.versions(target) for target in registry.targets()}
        running = link.call(link.store.canaries.get(COMMUNITY))
        if running is None:
            return {"versions": versions, "canary": None}
        decision = canary.judge(registry, running, settings.trainer.canary)
    seen = decision.figures
    return {
        "versions": versions,
        "canary": {
            "target": running.target,
            "name": running.name,
            "version": running.version,
            "share": running.share,
            "min_ratings": running.min_ratings,
            "started_at": running.started_at,
            "run": running.run,
            "verdict": decision.action,
            "reason": decision.reason,
            "level": decision.level,
            "figures": seen.model_dump() if seen else None,
            "ratings": seen.ratings if seen else 0,
            "like_rate": seen.like_rate if seen else None,
            "live_like_rate": seen.live_like_rate if seen else None,
        },
    }


async def learning(store: Store, summaries_count: int = NIGHTS_SHOWN) -> dict[str, Any]:
    summaries = await store.dashboard.run_summaries(summaries_count)
    counts = await store.ratings.like_counts()
    records = await store.registry.records()
    pause = await store.dashboard.schedule_pause()
    audit = await store.dashboard.audit_log(20)
    return {
        "runs": [s.model_dump(mode="json") for s in summaries],
        "likes": like_series(summaries, counts),
        "like_counts": {name: list(n) for name, n in counts.items()},
        "live": [
            {
                "target": target,
                "version": r.version,
                "name": r.name,
                "promoted_at": r.promoted_at,
                "test_ppl": r.metrics.get("test_ppl"),
            }
            for target, r in sorted(records.items(), key=lambda item: (item[0] != COMMUNITY, item[0]))
        ],  # fmt: skip
        "paused": pause.model_dump(mode="json") if pause else None,
        "audit": [a.model_dump(mode="json") for a in audit],
    }


async def members(store: Store) -> dict[str, Any]:
    counts = await store.counts.members(int((time.time() - WEEK_S) * 1000))
    return {
        "members": counts.members,
        "opted_in": counts.opted_in,
        "opted_out": counts.opted_out,
        "forgotten_this_week": counts.forgotten,
        "ratings_this_week": counts.ratings,
    }


def serving(registry: CollectorRegistry, *, model: str, started: float) -> dict[str, Any]:
    """This brain's metrics now: totals since it started and the gauges as they stand."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def total(name: str, **labels: str) -> float:
        return sum(v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items()))

    ttft = [
        (float(labels["le"]), value) for labels, value in samples.get("ownchat_time_to_first_token_seconds_bucket", [])
    ]
    lookups = total("ownchat_prefix_cache_lookups_total")
    return {
        "model": model,
        "uptime_s": time.time() - started,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "requests": total("ownchat_request_seconds_count"),
        "replies": {labels.get("outcome", ""): v for labels, v in samples.get("ownchat_replies_total", [])},
        "admitted": total("ownchat_admission_total", outcome="admitted"),
        "refused": total("ownchat_admission_total", outcome="refused"),
        "in_use": total("ownchat_admitted_requests"),
        "queue": total("ownchat_queue_depth"),
        "active": total("ownchat_active_sequences"),
        "tokens": total("ownchat_tokens_generated_total"),
        "redis_errors": total("ownchat_redis_errors_total"),
        "ttft": {
            "count": total("ownchat_time_to_first_token_seconds_count"),
            **{f"p{round(q * 100)}": quantile(q, ttft) for q in (0.5, 0.9, 0.99)},
        },
        "prefix_cache": {
            "lookups": lookups,
            "hits": total("ownchat_prefix_cache_hits_total"),
            "hit_rate": total("ownchat_prefix_cache_hits_total") / lookups if lookups else None,
            "reused_tokens": total("ownchat_prefix_cache_reused_tokens_total"),
        },
        "background": total("ownchat_background_tasks"),
    }


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of a Prometheus histogram from its cumulative buckets, interpolated within the bucket as
    PromQL's histogram_quantile does; None before the first observation."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all that is known
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower
