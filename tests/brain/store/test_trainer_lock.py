"""The nightly run's lock: one holder at a time; only the holder renews or releases it; a take-over only from the
holder it names."""

from __future__ import annotations


async def test_one_holder_at_a_time_and_only_it_renews_or_releases(store):
    assert await store.trainer_lock.acquire("run-a", ttl_ms=60_000)
    assert not await store.trainer_lock.acquire("run-b", ttl_ms=60_000)
    assert await store.trainer_lock.holder() == "run-a"
    assert not await store.trainer_lock.renew("run-b", ttl_ms=60_000)
    assert not await store.trainer_lock.release("run-b")
    assert await store.trainer_lock.renew("run-a", ttl_ms=60_000)
    assert await store.trainer_lock.release("run-a")
    assert await store.trainer_lock.holder() is None


async def test_a_take_over_replaces_only_the_holder_it_names(store):
    await store.trainer_lock.acquire("dead-run", ttl_ms=60_000)
    assert not await store.trainer_lock.take_over("someone-else", "run-c", ttl_ms=60_000)
    assert await store.trainer_lock.take_over("dead-run", "run-c", ttl_ms=60_000)
    assert await store.trainer_lock.holder() == "run-c"
