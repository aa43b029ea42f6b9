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
