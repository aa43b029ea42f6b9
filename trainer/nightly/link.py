"""The trainer's way to Redis: the brain's Store, driven from an event loop of its own in a thread.

The nightly run is synchronous and trains for minutes at a time; its Redis calls go through this loop,
where the lock renewal keeps running while the main thread trains.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from brain.settings import Settings
from brain.store import Store
from brain.store.client import connect

T = TypeVar("T")


class RedisLink:
    def __init__(self, url: str, *, cluster: bool = False, password: str | None = None, timeout: float = 5.0):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="redis-link", daemon=True)
        self.thread.start()
        self.store: Store = self.call(self._open(url, cluster, password, timeout))

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisLink:
        password = settings.secrets.redis_password
        return cls(
            settings.redis.url,
            cluster=settings.redis.cluster,
            password=password.get_secret_value() if password else None,
            timeout=max(settings.redis.socket_timeout_s, 5.0),
        )

    @staticmethod
    async def _open(url: str, cluster: bool, password: str | None, timeout: float) -> Store:
        store = Store(connect(url, cluster=cluster, password=password, timeout=timeout))
        await store.ping()
        await store.ids.load()
        return store

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the link's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.call(self.store.close(), timeout=5)
        except Exception:  # closing a link to a Redis that is gone must not hide the real error
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def __enter__(self) -> RedisLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
