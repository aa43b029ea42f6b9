"""What operators count: members, consent, log entries, requests served and ratings; never who."""

from __future__ import annotations

import asyncio

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
    assert counts.forgotten == 1
    assert (await store.counts.members(now_ms() + 60_000)).ratings == 0


async def test_a_forgotten_member_counts_once_however_often_they_forget(store):
    for n in (11, 12, 13):
        await store.profiles.opt_in(f"telegram:{n}", "v1")
        await store.forgetting.forget(f"telegram:{n}")
    assert (await store.counts.members(0)).forgotten == 3
    later = now_ms() + 1
    while now_ms() < later:  # the second /forget of telegram:12 lands after ``later``
        await asyncio.sleep(0.001)
    await store.forgetting.forget("telegram:12")
    assert (await store.counts.members(0)).forgotten == 3, "a member forgotten twice is one member"
    assert (await store.counts.members(later)).forgotten == 1, "since then, only the one forgotten again"
