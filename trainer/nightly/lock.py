"""The trainer's Redis lock: one nightly run (or rollback) at a time, however many replicas ask.

SET NX PX with a token of our own: JSON of a Holder (host, pid, start time). A background task extends the
TTL while we work, and release only deletes the key while it still holds our token. A run killed without
releasing blocks others for at most one TTL, except on its own host: there a new run sees that the holder's
process is gone and takes the lock over at once. Before changing what is live, the run checks that it still
holds the lock (a fencing check).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.nightly.link import RedisLink


class LockHeldError(RuntimeError):
    """Another nightly run holds the lock."""


class LockLostError(RuntimeError):
    """The lock expired or was taken while this run worked; it must not change what is live."""


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    """Who holds the lock. Two processes can tell whether pids are comparable: same host name, same boot,
    same pid namespace (containers that share a host name but not their pids are told apart)."""

    host: str
    pid: int
    boot: str = ""  # the kernel's boot id: a holder of an earlier boot of this host is gone
    pid_ns: str = ""
    started_at: float = 0.0
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @classmethod
    def me(cls) -> Holder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            boot=_read("/proc/sys/kernel/random/boot_id"),
            pid_ns=_pid_namespace(),
            started_at=time.time(),
        )

    def token(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, token: str | None) -> Holder | None:
        """The holder a token names; None for a token this version cannot read."""
        try:
            holder = cls(**json.loads(token or ""))
        except (TypeError, ValueError):
            return None
        return holder if isinstance(holder.host, str) and isinstance(holder.pid, int) and holder.pid > 0 else None

    def provably_dead(self, seen_from: Holder) -> bool:
        """True only when ``seen_from`` shares this holder's host and pids and this process is gone."""
        if self.host != seen_from.host or self.pid_ns != seen_from.pid_ns:
            return False  # another machine or container: only the lease tells
        if self.boot and seen_from.boot and self.boot != seen_from.boot:
            return True  # the host restarted since
        return not _alive(self.pid)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class TrainerLock:
    def __init__(self, link: RedisLink, ttl_s: float):
        self.link = link
        self.ttl_ms = int(ttl_s * 1000)
        self.holder = Holder.me()
        self.token = self.holder.token()
        self.lost = False
        self.taken_over: Holder | None = None  # the dead run this one took the lock from
        self._renewal: Future[Any] | None = None

    def acquire(self) -> TrainerLock:
        store = self.link.store
        if not self.link.call(store.trainer_lock.acquire(self.token, self.ttl_ms)):
            token = self.link.call(store.trainer_lock.holder())
            holder = Holder.parse(token)
            dead = token is not None and holder is not None and holder.provably_dead(self.holder)
            if not (dead and self.link.call(store.trainer_lock.take_over(token or "", self.token, self.ttl_ms))):
                who = holder.describe() if holder else token or "just released"
                raise LockHeldError(f"another trainer run holds the lock ({who}); nothing was done")
            self.taken_over = holder
        self._renewal = self.link.spawn(self._renew_forever())
        return self

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self.link.store.trainer_lock.renew(self.token, self.ttl_ms):
                    self.lost = True
                    return
            except Exception:  # Redis briefly away: keep trying until the TTL decides
                continue

    def check(self) -> None:
        """Raise LockLostError unless the lock is still ours (extending it while at it)."""
        if self.lost or not self.link.call(self.link.store.trainer_lock.renew(self.token, self.ttl_ms)):
            self.lost = True
            raise LockLostError("the trainer lock expired or was taken by another run; nothing was promoted")

    def release(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        try:
            self.link.call(self.link.store.trainer_lock.release(self.token), timeout=10)
        except Exception:  # Redis gone: the TTL frees the lock
            pass

    def __enter__(self) -> TrainerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
