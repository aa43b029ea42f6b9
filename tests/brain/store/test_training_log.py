"""The training log holds only what was said while opted in, and /optout delete empties it."""

from __future__ import annotations

from tests.brain.store.helpers import say


async def test_opted_out_turns_never_reach_the_log(store):
    await say(store, "telegram:1", "before consent CANARY-A")
    await store.profiles.opt_in("telegram:1", "v7")
    await say(store, "telegram:1", "while opted in CANARY-B")
    await store.profiles.opt_out("telegram:1", delete_logs=False)
    await say(store, "telegram:1", "after opt-out CANARY-C")
    entries = [e async for e in store.training_log.entries("telegram:1")]
    assert [e["user_text"] for e in entries] == ["while opted in CANARY-B"]
    assert entries[0]["consent_version"] == "v7"


async def test_opt_out_can_delete_the_log(store):
    await store.profiles.opt_in("telegram:1", "v1")
    await say(store, "telegram:1", "hello")
    assert await store.training_log.length("telegram:1") == 1
    assert "telegram:1" in await store.training_log.users()
    await store.profiles.opt_out("telegram:1", delete_logs=True)
    assert await store.training_log.length("telegram:1") == 0
    assert "telegram:1" not in await store.training_log.users()
