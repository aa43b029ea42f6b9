"""Counts for operators: members, consent, log entries, requests served and ratings; never who."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brain.store import keys
from brain.store.client import chunks


@dataclass
class MemberCounts:
    """The operator's view of members: counts only. ``forgotten`` and ``ratings``: since the time asked for."""

    members: int
    opted_in: int
    opted_out: int
    forgotten: int
    ratings: int


class Counts:
    """Reads the global sets and counters; writes nothing."""

    def __init__(self, client: Any):
        self.r = client

    async def stats(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        pipe.scard(keys.USERS)
        pipe.scard(keys.OPTED_IN)
        pipe.smembers(keys.LOGGED_USERS)
        pipe.get(keys.REQUESTS_SERVED)
        users, opted, logged, served = await pipe.execute()
        pipe = self.r.pipeline(transaction=False)
        for user in logged:
            pipe.xlen(keys.log(user))
        lengths = await pipe.execute() if logged else []
        return {
            "users": int(users),
            "opted_in": int(opted),
            "log_entries": sum(int(n) for n in lengths),
            "requests_served": int(served or 0),
        }

    async def members(self, since_ms: int) -> MemberCounts:
        """How many members there are, opted in and out, forgotten and ratings kept since ``since_ms``: counts,
        never who."""
        pipe = self.r.pipeline(transaction=False)
        pipe.scard(keys.USERS)
        pipe.scard(keys.OPTED_IN)
        pipe.zcount(keys.TOMBSTONES, since_ms, "+inf")
        pipe.smembers(keys.RATERS)
        members, opted_in, forgotten, raters = await pipe.execute()
        ratings = 0
        for chunk in chunks(sorted(raters)):
            pipe = self.r.pipeline(transaction=False)
            for rater in chunk:
                pipe.zcount(keys.rating_order(rater), since_ms, "+inf")
            ratings += sum(int(n) for n in await pipe.execute())
        return MemberCounts(
            members=int(members), opted_in=int(opted_in), opted_out=max(0, int(members) - int(opted_in)),
            forgotten=int(forgotten), ratings=ratings,
        )  # fmt: skip
