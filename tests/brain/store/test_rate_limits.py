"""The rate window: counted with every message, and always ending, however requests race its expiry."""

from __future__ import annotations

import asyncio
import time

from brain.store import Store, keys
from brain.store.client import connect


async def test_the_rate_window_always_ends_however_requests_race_its_expiry(redis_server):
    store = Store(connect(redis_server.url), rate_window_s=1)
    user = "telegram:5"
    try:

        async def hammer() -> list[int]:
            seen = []
            for _ in range(12):
                state = await store.chats.load_state(user, "telegram", "c1", False)
                seen.append(state.requests_this_window)
                await asyncio.sleep(0.02)
            return seen

        started = time.monotonic()
        counts: list[int] = []
        while time.monotonic() - started < 2.5:  # across at least two expiries of the one-second window
            for seen in await asyncio.gather(*(hammer() for _ in range(16))):
                counts += seen
            assert await store.r.ttl(keys.rate(user)) != -1, "the counter lost its TTL: the user is refused forever"
        assert min(counts) == 1 and counts.count(1) >= 2, "the window never started again"
        assert max(counts) < len(counts)
    finally:
        await store.close()


async def test_a_counter_left_without_a_ttl_gets_one_at_the_next_request(store):
    user = "telegram:6"
    await store.r.set(keys.rate(user), 500)  # as a non-atomic count could leave it
    state = await store.chats.load_state(user, "telegram", "c1", False)
    assert state.requests_this_window == 501
    assert 0 < await store.r.ttl(keys.rate(user)) <= store.rate_limits.window_s


async def test_a_request_counted_alone_shares_the_window_of_the_chat_path(store):
    """A refused or non-chat request (a rating) is counted with take, the chat path with its state: one window."""
    user = "telegram:7"
    assert (await store.rate_limits.take(user))[0] == 1
    state = await store.chats.load_state(user, "telegram", "c1", False)
    assert state.requests_this_window == 2
    count, left = await store.rate_limits.take(user)
    assert count == 3 and 1 <= left <= store.rate_limits.window_s
