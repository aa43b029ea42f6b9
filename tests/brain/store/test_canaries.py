"""A canary is set, read and cleared, and every brain hears of each change on the reload channel."""

from __future__ import annotations

import asyncio

from brain.feedback_records import Canary
from brain.registry_records import ReloadEvent


async def test_a_canary_is_set_read_and_cleared_and_every_brain_hears_of_it(store):
    canary = Canary(target="community", version=4, name="community@4", path="community/v4", share=0.25,
                    min_ratings=20, started_at="2026-01-01T00:00:00")  # fmt: skip
    heard: list[ReloadEvent] = []
    subscribed = asyncio.Event()

    async def on_subscribed() -> None:
        subscribed.set()

    async def listen() -> None:
        async for event in store.registry.reload_events(on_subscribed=on_subscribed):
            heard.append(event)
            if len(heard) == 2:
                return

    listening = asyncio.create_task(listen())
    await asyncio.wait_for(subscribed.wait(), 10)
    await store.canaries.set(canary)
    assert await store.canaries.get("community") == canary
    assert await store.canaries.all() == {"community": canary}
    assert await store.canaries.clear("community")
    assert await store.canaries.get("community") is None
    assert not await store.canaries.clear("community"), "there was none left to end"
    await asyncio.wait_for(listening, 10)
    assert [(e.target, e.version, e.action) for e in heard] == [
        ("community", 4, "canary"),
        ("community", None, "canary"),
    ]
