"""Facts about a member: kept once, bounded, an extracted one never pushing out a pinned one, deleted by id with
the kept replies that quoted them."""

from __future__ import annotations

from brain.memory.facts import new_fact, stored_fact
from brain.store import Store, keys
from brain.store.facts import FactAdded
from tests.brain.store.helpers import a_turn, say

TTL = 3600


async def pin(store: Store, user: str, text: str, chat: str = "dm", kind: str = "direct") -> FactAdded:
    return await store.facts.add(user, stored_fact(new_fact(text, "pinned", chat, kind)), max_facts=3, ttl_s=TTL)


async def test_pinned_facts_are_kept_once_and_bounded(store):
    assert await pin(store, "telegram:1", "My name is Ann.") is FactAdded.added
    assert await pin(store, "telegram:1", "my name is ann") is FactAdded.known
    assert await pin(store, "telegram:1", "I live in Lisbon.") is FactAdded.added
    assert await pin(store, "telegram:1", "I like tea.") is FactAdded.added
    assert await pin(store, "telegram:1", "I like coffee too.") is FactAdded.full
    kept = [f["text"] for f in await store.facts.of("telegram:1")]
    assert kept == ["My name is Ann.", "I live in Lisbon.", "I like tea."]
    assert (await store.profiles.get("telegram:1"))["consent"] == "out"  # pinning made a profile, not a consent


async def test_an_extracted_fact_replaces_the_oldest_extracted_one_and_never_a_pinned_one(store):
    result = await say(store, "telegram:1", "hello", "dm")
    await pin(store, "telegram:1", "My name is Ann.")

    async def extract(text: str) -> FactAdded:
        fact = stored_fact(new_fact(text, "extracted", "dm", "direct", quote=f"I said: {text}"))
        return await store.facts.add("telegram:1", fact, max_facts=3, ttl_s=TTL, since=result.since)

    for text in ("I have a cat.", "I like tea.", "I play chess."):
        assert await extract(text) is FactAdded.added
    facts = await store.facts.of("telegram:1")
    assert [f["text"] for f in facts] == ["My name is Ann.", "I like tea.", "I play chess."]
    assert facts[2]["source"] == "extracted" and facts[2]["quote"] == "I said: I play chess."
    assert (facts[2]["chat_id"], facts[2]["chat_kind"]) == ("dm", "direct")


async def test_facts_expire_with_the_memory(store):
    await pin(store, "telegram:1", "I keep bees.")
    assert 0 < await store.r.ttl(keys.facts("telegram:1")) <= TTL


async def test_deleting_facts_by_id(store):
    for text in ("A one.", "B two.", "C three."):
        await pin(store, "telegram:1", text)
    ids = [f["id"] for f in await store.facts.of("telegram:1")]
    assert await store.facts.delete("telegram:1", [ids[1], "ffffffff"]) == 1
    assert [f["text"] for f in await store.facts.of("telegram:1")] == ["A one.", "C three."]
    assert await store.facts.delete("telegram:1", []) == 0


async def test_a_kept_reply_that_quoted_a_deleted_fact_goes_with_it(store):
    await pin(store, "telegram:1", "My code is QX-4471.")
    [fact] = await store.facts.of("telegram:1")
    turn = a_turn("a" * 16, "telegram:1").model_copy(update={"facts": [fact["id"]], "reply": "Your code: QX-4471"})
    since = (await store.profiles.get("telegram:1"))["since"]
    assert await store.turns.save(turn, since=since, ttl_s=600, turns_kept=10) == turn.turn_id
    await store.messages.map(turn, ["m1"], ttl_s=600, most_kept=100)

    assert await store.facts.delete("telegram:1", [fact["id"]]) == 1
    assert await store.turns.get(turn.turn_id) is None, "a /retry could bring the fact back"
    assert await store.messages.turn_of("telegram", "c1", "m1") is None
