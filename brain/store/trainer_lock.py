"""The nightly run's lock (``oc:trainer:lock``): one run at a time, held by a token with a TTL, renewed while the
run lives and taken over only from a holder known to be dead (trainer/nightly/lock.py decides when)."""

from __future__ import annotations

from typing import Any

from brain.store import keys, scripts


class TrainerLock:
    """Each change checks, in one script, that the lock is still held by the token that makes it."""

    def __init__(self, client: Any):
        self.r = client
        self._take_over = scripts.register(client, "take_over_lock")
        self._renew = scripts.register(client, "renew_lock")
        self._release = scripts.register(client, "release_lock")

    async def acquire(self, token: str, ttl_ms: int) -> bool:
        return bool(await self.r.set(keys.TRAINER_LOCK, token, nx=True, px=ttl_ms))

    async def take_over(self, holder: str, token: str, ttl_ms: int) -> bool:
        """Replace ``holder``'s token by ours, only while ``holder`` still holds the lock."""
        return bool(int(await self._take_over(keys=[keys.TRAINER_LOCK], args=[holder, token, ttl_ms])))

    async def renew(self, token: str, ttl_ms: int) -> bool:
        return bool(int(await self._renew(keys=[keys.TRAINER_LOCK], args=[token, ttl_ms])))

    async def release(self, token: str) -> bool:
        return bool(int(await self._release(keys=[keys.TRAINER_LOCK], args=[token])))

    async def holder(self) -> str | None:
        return await self.r.get(keys.TRAINER_LOCK)
