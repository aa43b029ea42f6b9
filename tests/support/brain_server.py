"""A real brain (uvicorn, in a thread of the test process) over a real redis-server and the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from brain.redis_local import LocalRedis, free_port
from brain.service.app import create_app
from brain.service.embedded import serve_in_thread
from brain.settings import Secrets, Settings
from tests.support.eventually import eventually_sync


@dataclass
class BrainHandle:
    url: str
    api_key: str | None
    redis: LocalRedis
    settings: Settings
    app: Any

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def brain_settings(redis_url: str, model_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis": {"url": redis_url, "socket_timeout_s": 1.0},
        # float32 weights: tests compare batched replies with solo ones token for token, and bfloat16 weights (the
        # default on CPUs with bfloat16 instructions) round differently with the shape of the batch
        "model": {"name": str(model_dir), "max_new_tokens": 24, "context_tokens": 512, "cpu_weights": "float32"},
        "memory": {"max_turns": 6, "max_tokens": 400, "summary_max_tokens": 16},
    }
    for section, fields in overrides.items():
        values.setdefault(section, {}).update(fields)
    return Settings(**values)


@contextmanager
def running_brain(
    tmp_path: Path,
    model_dir: Path,
    *,
    api_key: str | None = "test-key",
    redis: LocalRedis | None = None,
    operator_key: str | None = None,
    **overrides: Any,
) -> Iterator[BrainHandle]:
    """A brain on a free port with its own redis-server (or the one given); stopped on exit."""
    own_redis = redis is None
    redis = redis or LocalRedis(tmp_path / "redis").start()
    settings = brain_settings(redis.url, model_dir, **overrides)
    settings.secrets = Secrets(api_key=api_key or None, operator_key=operator_key)
    app = create_app(settings)
    try:
        with serve_in_thread(app, free_port(), limits=settings.limits, timeout_s=60) as url:
            handle = BrainHandle(url=url, api_key=api_key, redis=redis, settings=settings, app=app)
            _wait_ready(handle)
            yield handle
    finally:
        if own_redis:
            redis.stop()


def _wait_ready(handle: BrainHandle, timeout: float = 30) -> None:
    eventually_sync(
        lambda: httpx.get(f"{handle.url}/readyz").status_code == 200, "the brain was ready", timeout=timeout
    )
