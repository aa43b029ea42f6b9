"""Canaries (``oc:registry:canary``, typed in brain/feedback_records.py): a candidate that passed the gate, serving a
share of opted-in members."""

from __future__ import annotations

from typing import Any

from brain.feedback_records import Canary
from brain.registry_records import ReloadEvent
from brain.store import keys
from brain.store.registry import Registry


class Canaries:
    """The canary of each target that has one; every change is published on the registry's reload channel."""

    def __init__(self, client: Any, registry: Registry):
        self.r = client
        self.registry = registry

    async def all(self) -> dict[str, Canary]:
        """The canary of every target that has one (RecordFormatError for a record of another format)."""
        return {target: Canary.loads(raw) for target, raw in (await self.r.hgetall(keys.CANARY)).items()}

    async def get(self, target: str) -> Canary | None:
        raw = await self.r.hget(keys.CANARY, target)
        return Canary.loads(raw) if raw else None

    async def set(self, canary: Canary) -> None:
        """Start (or change) the target's canary, and tell every brain to serve it."""
        await self.r.hset(keys.CANARY, canary.target, canary.dumps())
        await self.registry.publish_reload(ReloadEvent(target=canary.target, version=canary.version, action="canary"))

    async def clear(self, target: str) -> bool:
        """End the target's canary (promoted or rolled back), and tell every brain; False if there was none."""
        removed = bool(await self.r.hdel(keys.CANARY, target))
        await self.registry.publish_reload(ReloadEvent(target=target, version=None, action="canary"))
        return removed
