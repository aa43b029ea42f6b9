"""Tombstones of forgotten members (``oc:tombstones``): the keyed hash of each one's id with the forget time, so that
no export after a /forget brings their data back. Tombstones of earlier versions hold the unkeyed SHA-256; the keyed
form of that hash, which finds the members of adapters trained by earlier versions, is kept apart
(``oc:tombstones:legacy``), so that each forgotten member is one tombstone."""

from __future__ import annotations

from typing import Any

from brain.store import keys
from brain.store.ids import LEGACY_PREFIX, MemberIds, legacy_tombstone_member


class Tombstones:
    """Who was forgotten, and when; never by their id."""

    def __init__(self, client: Any, ids: MemberIds):
        self.r = client
        self.ids = ids

    async def forms(self, user: str) -> list[str]:
        """What a tombstone of the user may hold: the keyed hash, and the unkeyed one an earlier version wrote."""
        return [await self.ids.member(user), legacy_tombstone_member(user)]

    async def queue_add(self, pipe: Any, user: str, at: int) -> None:
        """Queue the user's tombstone, at ``at`` (ms): two commands."""
        pipe.zadd(keys.TOMBSTONES, {await self.ids.member(user): at})
        # and the keyed form of the unkeyed hash that adapters trained by earlier versions name their members by, in a
        # set of its own: oc:tombstones keeps one member per forgotten user, which is what operators count
        legacy = await self.ids.member(LEGACY_PREFIX + legacy_tombstone_member(user))
        pipe.zadd(keys.TOMBSTONE_ALIASES, {legacy: at})

    async def forgotten_at(self, user: str) -> int | None:
        """When the user was last forgotten (ms), or None."""
        scores = await self.r.zmscore(keys.TOMBSTONES, await self.forms(user))
        found = [int(score) for score in scores if score is not None]
        return max(found) if found else None

    async def members(self) -> list[str]:
        """Every forgotten user, as the hash of their id (see tombstone_member)."""
        return list(await self.r.zrange(keys.TOMBSTONES, 0, -1))

    async def tombstoned(self, members: list[str]) -> set[str]:
        """Which of these tombstone members (hashes of user ids, see tombstone_member) are forgotten users."""
        if not members:
            return set()
        # a member may be the unkeyed hash an earlier version wrote (an adapter's meta.json): its keyed form counts,
        # found among the aliases, or in oc:tombstones where versions before the aliases had a set wrote it
        legacy = [await self.ids.member(LEGACY_PREFIX + member) for member in members]
        pipe = self.r.pipeline(transaction=False)
        pipe.zmscore(keys.TOMBSTONES, members + legacy)
        pipe.zmscore(keys.TOMBSTONE_ALIASES, legacy)
        scores, alias_scores = await pipe.execute()
        n = len(members)
        return {
            member
            for i, member in enumerate(members)
            if scores[i] is not None or scores[n + i] is not None or alias_scores[i] is not None
        }
