"""The Redis layout: consent, logging, forget and its tombstone, bounded memory."""

from __future__ import annotations

import asyncio
import time

import pytest

from brain.store import Store, connect, rate_key


@pytest.fixture
async def store(redis_server):
    s = Store(connect(redis_server.url))
    yield s
    await s.close()


def turn(role: str, text: str, tokens: int = 5) -> dict:
    return {"role": role, "text": text, "ts": 1.0, "tokens": tokens}


async def say(store: Store, user: str, text: str, chat: str = "c1", **limits) -> object:
    state = await store.load_chat_state(user, "telegram", chat, False)
    return await store.record_turn(
        user, chat, since=state.since, user_turn=turn("user", text), assistant_turn=turn("assistant", "ok"),
        max_turns=limits.get("max_turns", 10), max_tokens=limits.get("max_tokens", 1000), ttl_s=3600,
        display_name="Ann", persona="assistant",
    )  # fmt: skip


async def all_text(store: Store) -> str:
    """Every key name and every value in Redis, as one string to search."""
    out = []
    async for key in store.r.scan_iter("*"):
        out.append(key)
        kind = await store.r.type(key)
        if kind == "string":
            out.append(str(await store.r.get(key)))
        elif kind == "hash":
            out.append(str(await store.r.hgetall(key)))
        elif kind == "list":
            out.append(str(await store.r.lrange(key, 0, -1)))
        elif kind == "set":
            out.append(str(await store.r.smembers(key)))
        elif kind == "zset":
            out.append(str(await store.r.zrange(key, 0, -1)))
        elif kind == "stream":
            out.append(str(await store.r.xrange(key)))
    return "\n".join(out)


async def test_opted_out_turns_never_reach_the_log(store):
    await say(store, "telegram:1", "before consent CANARY-A")
    await store.opt_in("telegram:1", "v7")
    await say(store, "telegram:1", "while opted in CANARY-B")
    await store.opt_out("telegram:1", delete_logs=False)
    await say(store, "telegram:1", "after opt-out CANARY-C")
    entries = [e async for e in store.log_entries("telegram:1")]
    assert [e["user_text"] for e in entries] == ["while opted in CANARY-B"]
    assert entries[0]["consent_version"] == "v7"


async def test_opt_in_records_version_and_time(store):
    at = await store.opt_in("discord:9", "2026-11")
    profile = await store.profile("discord:9")
    assert profile["consent"] == "in" and profile["consent_version"] == "2026-11"
    assert int(profile["consent_at"]) == at


async def test_opt_out_can_delete_the_log(store):
    await store.opt_in("telegram:1", "v1")
    await say(store, "telegram:1", "hello")
    assert await store.log_length("telegram:1") == 1
    await store.opt_out("telegram:1", delete_logs=True)
    assert await store.log_length("telegram:1") == 0
    assert "telegram:1" not in await store.logged_users()


async def test_forget_leaves_no_trace_and_the_tombstone_blocks_late_writes(store):
    user = "telegram:4242"
    await store.opt_in(user, "v1")
    await say(store, user, "my secret FORGETME", chat="c1")
    await say(store, user, "more FORGETME", chat="c2")
    state = await store.load_chat_state(user, "telegram", "c1", False)  # a request in flight
    await store.forget(user)
    late = await store.record_turn(
        user, "c1", since=state.since, user_turn=turn("user", "late FORGETME"),
        assistant_turn=turn("assistant", "x"), max_turns=10, max_tokens=1000, ttl_s=60,
        display_name="Ann", persona="assistant",
    )  # fmt: skip
    assert not late.stored and not late.logged
    dump = await all_text(store)
    assert "4242" not in dump and "FORGETME" not in dump
    assert await store.forgotten_at(user) is not None
    assert [e async for e in store.log_entries(user)] == []


async def test_memory_is_bounded_and_returns_what_falls_out(store):
    for i in range(6):
        result = await say(store, "telegram:1", f"message {i}", max_turns=4)
    _, turns = await store.chat_memory("telegram:1", "c1")
    assert len(turns) == 4
    assert [t["text"] for t in turns if t["role"] == "user"] == ["message 4", "message 5"]
    assert [t["text"] for t in result.evicted] == ["message 3", "ok"]


async def test_memory_is_bounded_by_tokens(store):
    for i in range(5):
        await say(store, "telegram:1", f"m{i}", max_turns=100, max_tokens=25)
    _, turns = await store.chat_memory("telegram:1", "c1")
    assert sum(t["tokens"] for t in turns) <= 25


async def test_summary_is_not_written_back_after_a_reset(store):
    await say(store, "telegram:1", "hello")
    await store.reset_chat("telegram:1", "c1")
    await store.fold_summary("telegram:1", "c1", "stale summary", 60)
    summary, turns = await store.chat_memory("telegram:1", "c1")
    assert summary == "" and turns == []


async def test_one_users_keys_share_a_cluster_slot(store):
    from redis.crc import key_slot

    user = "telegram:77"
    await say(store, user, "hi")
    await store.opt_in(user, "v1")
    keys = await store.user_keys(user)
    assert len({key_slot(k.encode()) for k in keys}) == 1


async def test_the_rate_window_always_ends_however_requests_race_its_expiry(redis_server):
    store = Store(connect(redis_server.url), rate_window_s=1)
    user = "telegram:5"
    try:

        async def hammer() -> list[int]:
            seen = []
            for _ in range(12):
                state = await store.load_chat_state(user, "telegram", "c1", False)
                seen.append(state.requests_this_window)
                await asyncio.sleep(0.02)
            return seen

        started = time.monotonic()
        counts: list[int] = []
        while time.monotonic() - started < 2.5:  # across at least two expiries of the one-second window
            for seen in await asyncio.gather(*(hammer() for _ in range(16))):
                counts += seen
            assert await store.r.ttl(rate_key(user)) != -1, "the counter lost its TTL: the user is refused forever"
        assert min(counts) == 1 and counts.count(1) >= 2, "the window never started again"
        assert max(counts) < len(counts)
    finally:
        await store.close()


async def test_a_counter_left_without_a_ttl_gets_one_at_the_next_request(store):
    user = "telegram:6"
    await store.r.set(rate_key(user), 500)  # as a non-atomic count could leave it
    state = await store.load_chat_state(user, "telegram", "c1", False)
    assert state.requests_this_window == 501
    assert 0 < await store.r.ttl(rate_key(user)) <= store.rate_window_s


async def test_forget_deletes_the_group_personas_the_user_set_and_no_others(store):
    ann, bob = "telegram:1", "telegram:2"
    pirate, coach = {"name": "pirate", "custom": False}, {"name": "coach", "custom": False}
    secret = {"name": "custom", "custom": True, "system_prompt": "ANN-CANARY persona", "greeting": ""}
    await store.set_chat_persona("telegram", "g1", secret, author=ann)
    await store.set_chat_persona("telegram", "g2", coach, author=bob)
    await store.set_chat_persona("telegram", "g3", secret, author=ann)
    await store.set_chat_persona("telegram", "g3", pirate, author=bob)  # Bob replaced Ann's persona there
    assert await store.get_chat_persona("telegram", "g1") == secret  # the author is not part of the choice

    deleted = await store.forget(ann)

    assert await store.get_chat_persona("telegram", "g1") is None
    assert await store.get_chat_persona("telegram", "g2") == coach
    assert await store.get_chat_persona("telegram", "g3") == pirate
    assert deleted >= 2  # her persona in g1 and the set that listed it
    dump = await all_text(store)
    assert "ANN-CANARY" not in dump and ann not in dump
    await store.forget(bob)
    assert await store.get_chat_persona("telegram", "g2") is None
    assert await store.get_chat_persona("telegram", "g3") is None


async def test_every_member_of_a_group_gets_its_persona_without_its_author(store):
    await store.set_chat_persona("telegram", "g1", {"name": "pirate", "custom": False}, author="telegram:1")
    state = await store.load_chat_state("telegram:9", "telegram", "g1", True)
    assert state.chat_persona == {"name": "pirate", "custom": False}
