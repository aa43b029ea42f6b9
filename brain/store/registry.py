"""The model registry's Redis side (typed in brain/registry_records.py): the live adapter of each target, each
target's history, and the reload channel that tells every brain replica to reload."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster

from brain.registry_records import LiveAdapter, RecordFormatError, RegistryEvent, ReloadEvent
from brain.store import keys
from brain.store.dashboard import Dashboard

log = logging.getLogger("brain.store")
REGISTRY_HISTORY_LENGTH = 100


class Registry:
    """``oc:registry``, ``oc:registry:history:TARGET`` and the ``oc:registry:reload`` channel."""

    def __init__(self, client: Any, dashboard: Dashboard):
        self.r = client
        self.dashboard = dashboard

    async def records(self) -> dict[str, LiveAdapter]:
        """The live adapter of every target (RecordFormatError for a record of another format)."""
        return {target: LiveAdapter.loads(raw) for target, raw in (await self.r.hgetall(keys.REGISTRY)).items()}

    async def record(self, target: str) -> LiveAdapter | None:
        raw = await self.r.hget(keys.REGISTRY, target)
        return LiveAdapter.loads(raw) if raw else None

    async def set_record(self, target: str, record: LiveAdapter, event: RegistryEvent) -> None:
        """Make ``record`` the target's live adapter (one atomic HSET) and append ``event`` to its history."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(keys.REGISTRY, target, record.dumps())
        pipe.lpush(keys.registry_history(target), event.dumps())
        pipe.ltrim(keys.registry_history(target), 0, REGISTRY_HISTORY_LENGTH - 1)
        await pipe.execute()

    async def delete_record(self, target: str, *, event: RegistryEvent | None = None, history: bool = False) -> None:
        """Take the target out of service, noting ``event`` in its history, or deleting the history too: then the
        target is gone for good (a forgotten user's), and so are its versions' fields in the like counters an older
        version kept (nothing counts them now, but they would still name it) and what run summaries say of it."""
        counters: list[list[str]] = []
        if history:
            pipe = self.r.pipeline(transaction=False)
            pipe.hkeys(keys.LIKES)
            pipe.hkeys(keys.DISLIKES)
            counters = [[f for f in fields if f.startswith(f"{target}@")] for fields in await pipe.execute()]
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(keys.REGISTRY, target)
        for name, fields in zip((keys.LIKES, keys.DISLIKES), counters, strict=False):
            if fields:
                pipe.hdel(name, *fields)
        if history:
            pipe.delete(keys.registry_history(target))
        elif event is not None:
            pipe.lpush(keys.registry_history(target), event.dumps())
            pipe.ltrim(keys.registry_history(target), 0, REGISTRY_HISTORY_LENGTH - 1)
        await pipe.execute()
        if history:
            await self.dashboard.unname(target)

    async def history(self, target: str, count: int = REGISTRY_HISTORY_LENGTH) -> list[RegistryEvent]:
        """The target's promotions, rollbacks and removals, newest first."""
        raws = await self.r.lrange(keys.registry_history(target), 0, count - 1)
        return [RegistryEvent.loads(raw) for raw in raws]

    async def publish_reload(self, event: ReloadEvent) -> int:
        return int(await self.r.publish(keys.RELOAD_CHANNEL, event.dumps()))

    async def reload_events(
        self, on_subscribed: Callable[[], Awaitable[Any]] | None = None
    ) -> AsyncIterator[ReloadEvent]:
        """Reload events as they are published; ends (by raising) when the connection to Redis is lost.
        ``on_subscribed`` runs once the subscription stands, before the first event is read."""
        if isinstance(self.r, RedisCluster):
            # a cluster client learns its slot map on first use; a subscription may be that first use
            await self.r.initialize()
        pubsub = self.r.pubsub()
        await pubsub.subscribe(keys.RELOAD_CHANNEL)
        try:
            # the server's confirmation: from here on no event is missed
            while ((await pubsub.get_message(timeout=None)) or {}).get("type") != "subscribe":
                pass
            if on_subscribed is not None:
                await on_subscribed()
            while True:
                message = await pubsub.get_message(timeout=None)
                if message and message.get("type") == "message":
                    try:
                        event = ReloadEvent.loads(message["data"])
                    except RecordFormatError as error:  # refused, and said why; the reconcile timer still reads
                        log.error("a reload event was refused: %s", error)
                        continue
                    yield event
        finally:
            await pubsub.aclose()
