"""After a /forget, Redis's append-only file is rewritten so that the forgotten data leaves the disk."""

from __future__ import annotations

from brain.redis_local import LocalRedis
from brain.store import Store
from brain.store.client import connect
from tests.brain.store.helpers import say


def on_disk(server: LocalRedis) -> bytes:
    return b"".join(path.read_bytes() for path in server.directory.rglob("*") if path.is_file())


async def test_a_forget_makes_a_rewrite_due_and_the_rewrite_takes_the_words_off_the_disk(store, redis_server):
    assert not await store.persistence.forgotten_since_rewrite()
    await say(store, "telegram:1", "QX-ON-DISK")
    await store.forgetting.forget("telegram:1")
    assert b"QX-ON-DISK" in on_disk(redis_server), "the append-only file still holds what was forgotten"
    assert await store.persistence.forgotten_since_rewrite()
    assert await store.persistence.rewrite(timeout_s=30)
    assert not await store.persistence.forgotten_since_rewrite()
    assert b"QX-ON-DISK" not in on_disk(redis_server)


async def test_without_an_append_only_file_there_is_nothing_to_rewrite(tmp_path):
    server = LocalRedis(tmp_path / "redis", appendonly=False).start()
    store = Store(connect(server.url))
    try:
        assert not await store.persistence.rewrite(timeout_s=30)
    finally:
        await store.close()
        server.stop()
