"""The trainer lock: a holder that is provably dead (this host, its process gone) loses the lock at once; a
live holder keeps it, and so does one whose death cannot be checked here, until its lease runs out."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.eventually import eventually_sync
from trainer.nightly.link import RedisLink
from trainer.nightly.lock import Holder, LockHeldError, TrainerLock

HOLD = """
import sys, time
from trainer.nightly.link import RedisLink
from trainer.nightly.lock import TrainerLock
TrainerLock(RedisLink(sys.argv[1]), ttl_s=60).acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def link(redis_server) -> Iterator[RedisLink]:
    with RedisLink(redis_server.url) as link:
        yield link


def another_run(redis_url: str) -> subprocess.Popen:
    """A trainer process of this host that takes the lock (60 s lease) and keeps it while it lives."""
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    child = subprocess.Popen([sys.executable, "-c", HOLD, redis_url], env=env, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"held\n", "the other run never took the lock"
    return child


def test_a_lock_whose_holder_died_on_this_host_is_taken_over_at_once(redis_server, link: RedisLink) -> None:
    child = another_run(redis_server.url)
    try:
        with pytest.raises(LockHeldError, match=f"pid {child.pid} on "):
            TrainerLock(link, ttl_s=60).acquire()  # alive: its lease stands
        child.kill()
        child.wait()

        lock = TrainerLock(link, ttl_s=60).acquire()  # long before the 60 s lease would end
        assert lock.taken_over is not None and lock.taken_over.pid == child.pid
        assert link.call(link.store.trainer_lock.holder()) == lock.token
        lock.check()
        lock.release()
        assert link.call(link.store.trainer_lock.holder()) is None
    finally:
        child.kill()
        child.wait()


def test_a_holder_on_another_host_keeps_the_lock_until_its_lease_ends(link: RedisLink) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that is surely free here, but means nothing on the other host
    elsewhere = Holder(host="another-host", pid=gone.pid)
    assert link.call(link.store.trainer_lock.acquire(elsewhere.token(), 1500))

    with pytest.raises(LockHeldError, match=f"pid {gone.pid} on another-host"):
        TrainerLock(link, ttl_s=60).acquire()
    eventually_sync(lambda: link.call(link.store.trainer_lock.holder()) is None, "the other host's lease ran out")
    with TrainerLock(link, ttl_s=60) as lock:
        assert lock.taken_over is None
        assert Holder.parse(link.call(link.store.trainer_lock.holder())) == lock.holder


def test_a_holder_token_that_cannot_be_read_is_never_taken_over(link: RedisLink) -> None:
    assert link.call(link.store.trainer_lock.acquire("oldhost:12345:1700000000:abc", 60_000))
    with pytest.raises(LockHeldError, match="oldhost:12345"):
        TrainerLock(link, ttl_s=60).acquire()
