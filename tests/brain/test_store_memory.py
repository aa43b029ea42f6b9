"""Facts and turns kept for recall in Redis: bounded, scoped to their chat, expiring, and gone after /forget."""

from __future__ import annotations

import pytest

from brain.memory.facts import new_fact, stored_fact
from brain.store import FactAdded, Store, connect, earlier_key, facts_key
from tests.brain.test_store import all_text, turn

TTL = 3600


@pytest.fixture
async def store(redis_server):
    s = Store(connect(redis_server.url))
    yield s
    await s.close()


async def say(store: Store, user: str, text: str, chat: str = "dm", kind: str = "direct", keep: int = 100):
    state = await store.load_chat_state(user, "telegram", chat, kind == "group", earlier=True)
    return await store.record_turn(
        user, chat, since=state.since, user_turn=turn("user", text), assistant_turn=turn("assistant", "ok"),
        max_turns=4, max_tokens=1000, ttl_s=TTL, display_name="Ann", persona="assistant",
        chat_kind=kind, keep_earlier=keep,
    )  # fmt: skip


async def pin(store: Store, user: str, text: str, chat: str = "dm", kind: str = "direct") -> FactAdded:
    return await store.add_fact(user, stored_fact(new_fact(text, "pinned", chat, kind)), max_facts=3, ttl_s=TTL)


async def test_turns_that_leave_the_window_are_kept_with_their_chat(store):
    for i in range(4):
        await say(store, "telegram:1", f"direct {i}")
    await say(store, "telegram:1", "group 0", chat="g1", kind="group")
    state = await store.load_chat_state("telegram:1", "telegram", "dm", False, earlier=True)
    assert [t["text"] for t in state.turns if t["role"] == "user"] == ["direct 2", "direct 3"]
    kept = [(t["text"], t["chat_id"], t["chat_kind"]) for t in state.earlier]
    assert kept == [("direct 0", "dm", "direct"), ("ok", "dm", "direct"), ("direct 1", "dm", "direct"),
                    ("ok", "dm", "direct")]  # fmt: skip


async def test_only_the_newest_earlier_turns_are_kept_and_none_when_recall_is_off(store):
    for i in range(6):
        await say(store, "telegram:1", f"message {i}", keep=3)
    assert [t["text"] for t in await store.earlier_turns("telegram:1")] == ["ok", "message 3", "ok"]
    for i in range(6):
        await say(store, "telegram:2", f"message {i}", keep=0)
    assert await store.earlier_turns("telegram:2") == []


async def test_reset_clears_one_chats_earlier_turns_and_keeps_the_others(store):
    for i in range(4):
        await say(store, "telegram:1", f"direct {i}")
        await say(store, "telegram:1", f"group {i}", chat="g1", kind="group")
    assert await store.reset_chat("telegram:1", "g1") == 4
    texts = [t["text"] for t in await store.earlier_turns("telegram:1")]
    assert "direct 0" in texts and not any(text.startswith("group") for text in texts)
    assert 0 < await store.r.ttl(earlier_key("telegram:1")) <= TTL


async def test_pinned_facts_are_kept_once_and_bounded(store):
    assert await pin(store, "telegram:1", "My name is Ann.") is FactAdded.added
    assert await pin(store, "telegram:1", "my name is ann") is FactAdded.known
    assert await pin(store, "telegram:1", "I live in Lisbon.") is FactAdded.added
    assert await pin(store, "telegram:1", "I like tea.") is FactAdded.added
    assert await pin(store, "telegram:1", "I like coffee too.") is FactAdded.full
    kept = [f["text"] for f in await store.facts("telegram:1")]
    assert kept == ["My name is Ann.", "I live in Lisbon.", "I like tea."]
    assert (await store.profile("telegram:1"))["consent"] == "out"  # pinning made a profile, not a consent


async def test_an_extracted_fact_replaces_the_oldest_extracted_one_and_never_a_pinned_one(store):
    result = await say(store, "telegram:1", "hello")
    await pin(store, "telegram:1", "My name is Ann.")

    async def extract(text: str) -> FactAdded:
        fact = stored_fact(new_fact(text, "extracted", "dm", "direct", quote=f"I said: {text}"))
        return await store.add_fact("telegram:1", fact, max_facts=3, ttl_s=TTL, since=result.since)

    for text in ("I have a cat.", "I like tea.", "I play chess."):
        assert await extract(text) is FactAdded.added
    facts = await store.facts("telegram:1")
    assert [f["text"] for f in facts] == ["My name is Ann.", "I like tea.", "I play chess."]
    assert facts[2]["source"] == "extracted" and facts[2]["quote"] == "I said: I play chess."
    assert (facts[2]["chat_id"], facts[2]["chat_kind"]) == ("dm", "direct")


async def test_no_fact_of_a_message_is_stored_after_its_author_was_forgotten(store):
    result = await say(store, "telegram:1", "I have a cat CANARY-LATE")
    await store.forget("telegram:1")
    text = "I have a cat CANARY-LATE"
    late = stored_fact(new_fact(text, "extracted", "dm", "direct", quote=text))
    added = await store.add_fact("telegram:1", late, max_facts=3, ttl_s=TTL, since=result.since)
    assert added is FactAdded.forgotten
    assert "CANARY-LATE" not in await all_text(store)


async def test_facts_and_earlier_turns_expire_with_the_memory_and_are_deleted_by_forget(store):
    await pin(store, "telegram:1", "I keep bees CANARY-FACT")
    for i in range(4):
        await say(store, "telegram:1", f"CANARY-TURN {i}")
    for key in (facts_key("telegram:1"), earlier_key("telegram:1")):
        assert 0 < await store.r.ttl(key) <= TTL
    assert {facts_key("telegram:1"), earlier_key("telegram:1")} <= set(await store.user_keys("telegram:1"))
    await store.forget("telegram:1")
    text = await all_text(store)
    assert "CANARY-FACT" not in text and "CANARY-TURN" not in text


async def test_deleting_facts_by_id(store):
    for text in ("A one.", "B two.", "C three."):
        await pin(store, "telegram:1", text)
    ids = [f["id"] for f in await store.facts("telegram:1")]
    assert await store.delete_facts("telegram:1", [ids[1], "ffffffff"]) == 1
    assert [f["text"] for f in await store.facts("telegram:1")] == ["A one.", "C three."]
    assert await store.delete_facts("telegram:1", []) == 0
