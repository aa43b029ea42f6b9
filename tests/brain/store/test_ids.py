"""The id key that every hash of a member's id is keyed with: generated once, shared by every process, and what
decides the hash."""

from __future__ import annotations

import asyncio
import hashlib

from brain.store import Store, keys
from brain.store.client import connect
from brain.store.ids import tombstone_member


async def test_the_key_is_generated_once_shared_by_every_process_and_decides_the_hash(
    keyless_store, redis_server, monkeypatch
) -> None:
    store = keyless_store
    others = [Store(connect(redis_server.url)) for _ in range(4)]
    try:
        await store.r.delete(keys.ID_KEY)  # a fresh Redis: four processes start at once, SET NX lets one key win
        await asyncio.gather(*(other.ids.load() for other in others))
        member = tombstone_member("telegram:1")
        for other in others:
            await other.ids.load()
            assert tombstone_member("telegram:1") == member
        assert member != hashlib.sha256(b"telegram:1").hexdigest()
        monkeypatch.setenv("OWNCHAT_ID_KEY", "another operator's key")
        await store.ids.load()
        assert tombstone_member("telegram:1") != member, "the hash depends on the key"
    finally:
        for other in others:
            await other.close()
        monkeypatch.delenv("OWNCHAT_ID_KEY")
        await store.ids.load()
