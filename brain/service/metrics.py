"""Prometheus metrics of one brain, in a registry of its own (so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_latency = Histogram(
            "ownchat_request_seconds", "Request latency by route", ["route"], registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )  # fmt: skip
        self.tokens_generated = Counter("ownchat_tokens_generated", "Tokens generated", registry=self.registry)
        self.batch_size = Histogram(
            "ownchat_batch_size",
            "Rows per decode step",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.queue_depth = Gauge("ownchat_queue_depth", "Requests waiting for a batch slot", registry=self.registry)
        self.active = Gauge("ownchat_active_sequences", "Sequences being generated", registry=self.registry)
        self.redis_errors = Counter("ownchat_redis_errors", "Requests that failed on Redis", registry=self.registry)
        self.replies = Counter("ownchat_replies", "Chat replies by outcome", ["outcome"], registry=self.registry)
        self.admitted = Gauge("ownchat_admitted_requests", "Generation slots in use", registry=self.registry)
        # summary folds and fact extraction waiting on members' replies: joined to a newer one (coalesced),
        # pushed out of a full backlog (dropped), held back while members waited (delayed), or made to give
        # their row to a member (preempted)
        self.background = Counter(
            "ownchat_background_generations",
            "Background generations coalesced, dropped, delayed or preempted for members' replies",
            ["outcome"],
            registry=self.registry,
        )

    def watch_engine(self, waiting: Callable[[], float], active: Callable[[], float]) -> None:
        self.queue_depth.set_function(waiting)
        self.active.set_function(active)

    def watch_admission(self, in_use: Callable[[], float]) -> None:
        self.admitted.set_function(in_use)

    def on_background(self, outcome: str) -> None:
        """Called from the engine's worker thread (prometheus_client's counters are thread-safe)."""
        self.background.labels(outcome=outcome).inc()

    def on_step(self, batch_size: int, new_tokens: int) -> None:
        self.batch_size.observe(batch_size)
        self.tokens_generated.inc(new_tokens)
