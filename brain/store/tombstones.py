"""Tombstones of forgotten members (``oc:tombstones``): the keyed hash of each one's id with the forget time, so that
no export after a /forget brings their data back. Tombstones of earlier versions hold the unkeyed SHA-256."""

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
        """Queue the user's tombstone, at ``at`` (ms)."""
        # also the keyed form of the unkeyed hash that adapters trained by earlier versions name their members by
        legacy = await self.ids.member(LEGACY_PREFIX + legacy_tombstone_member(user))
        pipe.zadd(keys.TOMBSTONES, {await self.ids.member(user): at, legacy: at})

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
        # a member may be the unkeyed hash an earlier version wrote (an adapter's meta.json): its keyed form counts
        legacy = [await self.ids.member(LEGACY_PREFIX + member) for member in members]
        scores = await self.r.zmscore(keys.TOMBSTONES, members + legacy)
        found = [score is not None for score in scores]
        return {member for i, member in enumerate(members) if found[i] or found[len(members) + i]}
