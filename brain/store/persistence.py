"""Redis's own files: after a /forget, the append-only file must lose the forgotten data too, so the nightly run has
every node rewrite it from memory."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio.cluster import RedisCluster

from brain.store import keys
from brain.store.client import now_ms


class Persistence:
    """When the append-only files were last rewritten (``oc:persistence:rewritten-at``), and the rewrite itself."""

    def __init__(self, client: Any):
        self.r = client

    async def forgotten_since_rewrite(self) -> bool:
        """Whether a user was forgotten after the last rewrite of the append-only file."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(keys.TOMBSTONES, -1, -1, withscores=True)
        pipe.get(keys.PERSISTENCE_REWRITTEN)
        latest, rewritten = await pipe.execute()
        return bool(latest) and latest[0][1] > int(rewritten or 0)

    async def rewrite(self, *, timeout_s: float = 600.0, poll_s: float = 0.2) -> bool:
        """Have every Redis node with an append-only file rewrite it from memory (BGREWRITEAOF), so that
        deleted data leaves the disk, and wait until they are done. False where no node keeps one."""
        if not any(int(info.get("aof_enabled", 0)) for info in await self._on_each_node("INFO", "persistence")):
            return False
        deadline = time.monotonic() + timeout_s
        await self._rewrites_done(deadline, poll_s)  # one already running may have copied the data before
        started = now_ms()
        await self._on_each_node("BGREWRITEAOF")
        nodes = await self._rewrites_done(deadline, poll_s)
        if any(node.get("aof_last_bgrewrite_status", "ok") != "ok" for node in nodes):
            raise RuntimeError("Redis could not rewrite its append-only file (aof_last_bgrewrite_status: err)")
        await self.r.set(keys.PERSISTENCE_REWRITTEN, started)
        return True

    async def _rewrites_done(self, deadline: float, poll_s: float) -> list[dict[str, Any]]:
        """Wait until no node rewrites its append-only file or has a rewrite scheduled; their INFO then."""
        busy = ("aof_rewrite_in_progress", "aof_rewrite_scheduled")
        while True:
            nodes = await self._on_each_node("INFO", "persistence")
            if not any(int(node.get(name, 0)) for node in nodes for name in busy):
                return nodes
            if time.monotonic() > deadline:
                raise TimeoutError("Redis did not finish rewriting its append-only file in time")
            await asyncio.sleep(poll_s)

    async def _on_each_node(self, *command: str) -> list[Any]:
        """A server command on every node (each master and replica of a cluster keeps files of its own)."""
        if isinstance(self.r, RedisCluster):
            await self.r.initialize()
            # the nodes themselves: a node flag such as ALL_NODES fails for commands the client has no policy for
            replies = await self.r.execute_command(*command, target_nodes=self.r.get_nodes())
            return list(replies.values()) if isinstance(replies, dict) else [replies]
        return [await self.r.execute_command(*command)]
