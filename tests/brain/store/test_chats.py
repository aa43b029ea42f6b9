"""A member's memory of each chat: bounded by count and tokens, what falls out kept for recall with its chat, and a
reset that clears one chat only."""

from __future__ import annotations

from brain.store import Store, keys
from tests.brain.store.helpers import say

TTL = 3600


async def remember(store: Store, user: str, text: str, chat: str = "dm", kind: str = "direct", keep: int = 100):
    return await say(store, user, text, chat, kind=kind, max_turns=4, ttl_s=TTL, keep_earlier=keep)


async def test_memory_is_bounded_and_returns_what_falls_out(store):
    for i in range(6):
        result = await say(store, "telegram:1", f"message {i}", max_turns=4)
    _, turns = await store.chats.memory("telegram:1", "c1")
    assert len(turns) == 4
    assert [t["text"] for t in turns if t["role"] == "user"] == ["message 4", "message 5"]
    assert [t["text"] for t in result.evicted] == ["message 3", "ok"]


async def test_memory_is_bounded_by_tokens(store):
    for i in range(5):
        await say(store, "telegram:1", f"m{i}", max_turns=100, max_tokens=25)
    _, turns = await store.chats.memory("telegram:1", "c1")
    assert sum(t["tokens"] for t in turns) <= 25


async def test_summary_is_not_written_back_after_a_reset(store):
    await say(store, "telegram:1", "hello")
    await store.chats.reset("telegram:1", "c1")
    await store.chats.fold_summary("telegram:1", "c1", "stale summary", 60)
    summary, turns = await store.chats.memory("telegram:1", "c1")
    assert summary == "" and turns == []
    assert await store.chats.of("telegram:1") == set()


async def test_turns_that_leave_the_window_are_kept_with_their_chat(store):
    for i in range(4):
        await remember(store, "telegram:1", f"direct {i}")
    await remember(store, "telegram:1", "group 0", chat="g1", kind="group")
    state = await store.chats.load_state("telegram:1", "telegram", "dm", False, earlier=True)
    assert [t["text"] for t in state.turns if t["role"] == "user"] == ["direct 2", "direct 3"]
    kept = [(t["text"], t["chat_id"], t["chat_kind"]) for t in state.earlier]
    assert kept == [("direct 0", "dm", "direct"), ("ok", "dm", "direct"), ("direct 1", "dm", "direct"),
                    ("ok", "dm", "direct")]  # fmt: skip


async def test_only_the_newest_earlier_turns_are_kept_and_none_when_recall_is_off(store):
    for i in range(6):
        await remember(store, "telegram:1", f"message {i}", keep=3)
    assert [t["text"] for t in await store.chats.earlier_turns("telegram:1")] == ["ok", "message 3", "ok"]
    for i in range(6):
        await remember(store, "telegram:2", f"message {i}", keep=0)
    assert await store.chats.earlier_turns("telegram:2") == []


async def test_reset_clears_one_chats_earlier_turns_and_keeps_the_others(store):
    for i in range(4):
        await remember(store, "telegram:1", f"direct {i}")
        await remember(store, "telegram:1", f"group {i}", chat="g1", kind="group")
    assert await store.chats.reset("telegram:1", "g1") == 4
    texts = [t["text"] for t in await store.chats.earlier_turns("telegram:1")]
    assert "direct 0" in texts and not any(text.startswith("group") for text in texts)
    assert 0 < await store.r.ttl(keys.earlier("telegram:1")) <= TTL
    assert await store.chats.of("telegram:1") == {"dm"}
