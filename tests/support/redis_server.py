"""A real redis-server per test (or per module) on a free port, in a temporary directory."""

from __future__ import annotations

from pathlib import Path

from brain.redis_local import LocalRedis


def start_redis(directory: Path) -> LocalRedis:
    return LocalRedis(directory, appendonly=True).start()
