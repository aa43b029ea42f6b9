"""The brain served from a thread of the calling process: `bot console --embedded` and the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from brain.redis_local import free_port
from brain.service.server import uvicorn_config
from brain.settings import LimitSettings, Settings


@contextmanager
def serve_in_thread(
    app: Any, port: int, *, limits: LimitSettings | None = None, timeout_s: float = 600
) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1:port in a daemon thread; yields its URL once it listens."""
    config = uvicorn_config(app, limits or LimitSettings(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="embedded-brain", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the embedded brain did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def embedded_brain(settings: Settings) -> Iterator[str]:
    """A whole brain in this process (Redis started where none answers); yields its URL."""
    from brain.cli import ensure_local_redis
    from brain.service.app import create_app

    local_redis = ensure_local_redis(settings)
    try:
        with serve_in_thread(create_app(settings), free_port(), limits=settings.limits) as url:
            yield url
    finally:
        if local_redis is not None:
            local_redis.stop()  # type: ignore[attr-defined]
