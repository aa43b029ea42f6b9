"""The trainer's Redis lock: one nightly run (or rollback) at a time, however many replicas ask.

SET NX PX with a token of our own; a background task extends the TTL while we work, and release only
deletes the key while it still holds our token. A run killed without releasing blocks others for at most
one TTL. Before changing what is live, the run checks that it still holds the lock (a fencing check).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

from trainer.nightly.link import RedisLink


class LockHeldError(RuntimeError):
    """Another nightly run holds the lock."""


class LockLostError(RuntimeError):
    """The lock expired or was taken while this run worked; it must not change what is live."""


class TrainerLock:
    def __init__(self, link: RedisLink, ttl_s: float):
        self.link = link
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}:{uuid.uuid4().hex[:12]}"
        self.lost = False
        self._renewal = None

    def acquire(self) -> TrainerLock:
        if not self.link.call(self.link.store.acquire_trainer_lock(self.token, self.ttl_ms)):
            holder = self.link.call(self.link.store.trainer_lock_holder())
            raise LockHeldError(f"another trainer run holds the lock ({holder or 'just released'}); nothing was done")
        self._renewal = self.link.spawn(self._renew_forever())
        return self

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self.link.store.renew_trainer_lock(self.token, self.ttl_ms):
                    self.lost = True
                    return
            except Exception:  # Redis briefly away: keep trying until the TTL decides
                continue

    def check(self) -> None:
        """Raise LockLostError unless the lock is still ours (extending it while at it)."""
        if self.lost or not self.link.call(self.link.store.renew_trainer_lock(self.token, self.ttl_ms)):
            self.lost = True
            raise LockLostError("the trainer lock expired or was taken by another run; nothing was promoted")

    def release(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        try:
            self.link.call(self.link.store.release_trainer_lock(self.token), timeout=10)
        except Exception:  # Redis gone: the TTL frees the lock
            pass

    def __enter__(self) -> TrainerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
