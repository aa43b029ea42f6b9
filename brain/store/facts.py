"""Facts about a member, pinned by them or extracted from their messages (``oc:facts``): what memory brings back past
the window. A kept turn that quoted a deleted fact leaves with it."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from brain.api_models import Fact
from brain.store import keys, scripts
from brain.store.client import now_ms
from brain.store.stored import readable
from brain.store.turns import Turns


class FactAdded(Enum):
    added = 1
    known = 0
    forgotten = -1
    full = -2


class Facts:
    """Each member's list of facts, oldest first, bounded by count and kept for the memory TTL."""

    def __init__(self, client: Any, turns: Turns):
        self.r = client
        self.turns = turns
        self._add = scripts.register(client, "add_fact")
        self._delete = scripts.register(client, "delete_facts")

    async def of(self, user: str) -> list[dict[str, Any]]:
        """Every fact about the user, oldest first."""
        return readable(await self.r.lrange(keys.facts(user), 0, -1), Fact, "fact")

    async def add(
        self, user: str, fact: dict[str, Any], *, max_facts: int, ttl_s: int, since: str | None = None
    ) -> FactAdded:
        """Add a fact unless one with the same text is known. A pinned fact (``since`` None) creates the
        profile where there is none and is refused when the list is full; an extracted one is added only while
        the profile created at ``since`` stands (no forget meanwhile) and replaces the oldest extracted fact."""
        fact_keys = [keys.facts(user), keys.profile(user)]
        args: list[Any] = [json.dumps(fact), max_facts, ttl_s, now_ms(), since or "", "0" if since is None else "1"]
        status = FactAdded(int(await self._add(keys=fact_keys, args=args)))
        if status is FactAdded.added and since is None:
            await self.r.sadd(keys.USERS, user)
        return status

    async def delete(self, user: str, ids: list[str]) -> int:
        """Delete the facts with these ids, and the kept turns that quoted them; returns how many facts there were."""
        if not ids:
            return 0
        fact_keys = [keys.facts(user), keys.turn_records(user), keys.turn_order(user)]
        deleted, *dropped = await self._delete(keys=fact_keys, args=ids)
        await self.turns.unlink(dropped)
        return int(deleted)
