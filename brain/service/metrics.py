"""Prometheus metrics of one brain, in a registry of its own (so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# time to first token: chat replies are expected in well under a second on a GPU, seconds on a CPU
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


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
        self.time_to_first_token = Histogram(
            "ownchat_time_to_first_token_seconds", "From a generation's start to its first text",
            registry=self.registry, buckets=TTFT_BUCKETS,
        )  # fmt: skip
        self.admission_outcomes = Counter(
            "ownchat_admission", "Requests admitted to a generation slot or refused (503 busy)", ["outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.background_tasks = Gauge(
            "ownchat_background_tasks",
            "Memory's background jobs (summary folds, fact extraction) waiting or running",
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

    def watch_background(self, backlog: Callable[[], float]) -> None:
        self.background_tasks.set_function(backlog)

    def watch_prefix_cache(self, counts: Callable[[], tuple[int, int, int]]) -> None:
        """The engine's prefix cache: (lookups, hits, prompt tokens reused), counted where they happen."""
        self.registry.register(_PrefixCacheCollector(counts))


class _PrefixCacheCollector(Collector):
    def __init__(self, counts: Callable[[], tuple[int, int, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        lookups, hits, tokens = self.counts()
        yield CounterMetricFamily("ownchat_prefix_cache_lookups", "Prompts looked up in the prefix cache", lookups)
        yield CounterMetricFamily("ownchat_prefix_cache_hits", "Prompts that found a cached prefix", hits)
        yield CounterMetricFamily("ownchat_prefix_cache_reused_tokens", "Prompt tokens not prefilled", tokens)
