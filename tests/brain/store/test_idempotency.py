"""Idempotency keys: a request asked again stores nothing and gets the reply kept for it; a member's keys and
kept replies stay bounded, the oldest dropped together."""

from __future__ import annotations

from brain.store import keys
from brain.store.idempotency import MAX_REQUEST_KEYS


async def test_a_request_is_claimed_once_and_its_reply_kept(store):
    user = "telegram:1"
    assert await store.idempotency.claim(user, "req-1", ttl_s=60)
    assert not await store.idempotency.claim(user, "req-1", ttl_s=60), "a retry stores nothing"
    assert await store.idempotency.kept_reply(user, "req-1") is None
    await store.idempotency.keep_reply(user, "req-1", '{"text": "hi"}', ttl_s=60)
    assert await store.idempotency.kept_reply(user, "req-1") == '{"text": "hi"}'
    assert await store.idempotency.claim("telegram:2", "req-1", ttl_s=60), "keys are the member's own"


async def test_keys_beyond_the_bound_drop_their_kept_replies_with_them(store):
    user = "telegram:1"
    for n in range(MAX_REQUEST_KEYS + 5):
        assert await store.idempotency.claim(user, f"req-{n:05d}", ttl_s=60)
        await store.idempotency.keep_reply(user, f"req-{n:05d}", f"reply {n}", ttl_s=60)
    assert await store.r.zcard(keys.requests(user)) == MAX_REQUEST_KEYS
    assert await store.r.hlen(keys.replied(user)) == MAX_REQUEST_KEYS
    assert await store.idempotency.kept_reply(user, "req-00000") is None
    assert (
        await store.idempotency.kept_reply(user, f"req-{MAX_REQUEST_KEYS + 4:05d}") == f"reply {MAX_REQUEST_KEYS + 4}"
    )
