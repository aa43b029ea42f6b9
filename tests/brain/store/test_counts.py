"""What operators count: members, consent, log entries, requests served and ratings; never who."""

from __future__ import annotations

from brain.store.client import now_ms
from tests.brain.store.helpers import ANN, BOB, a_turn, keep, rate, say


async def test_stats_and_member_counts(store):
    start = now_ms()
    turn = a_turn("a" * 16)
    await keep(store, turn)
    await say(store, BOB, "hi")
    for user in (ANN, BOB):
        await store.profiles.opt_in(user, "v1")
    await say(store, ANN, "logged")
    await rate(store, turn, BOB, 1)
    await store.forgetting.forget("telegram:3")

    stats = await store.counts.stats()
    assert stats == {"users": 2, "opted_in": 2, "log_entries": 1, "requests_served": 4}
    counts = await store.counts.members(start)
    assert (counts.members, counts.opted_in, counts.opted_out, counts.ratings) == (2, 2, 0, 1)
    assert counts.forgotten > 0
    assert (await store.counts.members(now_ms() + 60_000)).ratings == 0
