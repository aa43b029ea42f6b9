"""The Redis client every repository of the store shares, and what they all do with it."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# keys read per pipeline where a loop reads many (the export of rated turns)
READ_CHUNK = 500


def connect(url: str, *, cluster: bool = False, password: str | None = None, timeout: float = 2.0) -> Any:
    """A redis.asyncio client (or cluster client) that fails fast while Redis is down and reconnects after."""
    options: dict[str, Any] = dict(
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        # after a Redis restart every pooled connection is dead: retry on a fresh one rather than fail the request
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    if cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.from_url(url, health_check_interval=10, **options)


def now_ms() -> int:
    return int(time.time() * 1000)


def chunks(items: list[str], size: int = READ_CHUNK) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
