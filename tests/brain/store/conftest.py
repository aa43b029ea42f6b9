from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from brain.redis_local import LocalRedis
from brain.store import Store
from brain.store.client import connect


@pytest.fixture
async def store(redis_server: LocalRedis) -> AsyncIterator[Store]:
    """The store over this test's own redis-server."""
    s = Store(connect(redis_server.url))
    yield s
    await s.close()


@pytest.fixture
async def keyless_store(redis_server, monkeypatch):
    """A store whose process has no OWNCHAT_ID_KEY: the key comes from Redis."""
    monkeypatch.delenv("OWNCHAT_ID_KEY", raising=False)
    s = Store(connect(redis_server.url))
    await s.ids.load()
    yield s
    await s.close()
