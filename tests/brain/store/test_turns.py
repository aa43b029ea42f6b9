"""Replies kept to be rated or retried: bounded per member, oldest first, and never kept for a member forgotten
while the reply was generated."""

from __future__ import annotations

from tests.brain.store.helpers import ANN, a_turn, keep, say
from tests.support.redis_dump import all_text


async def test_turns_kept_per_member_are_bounded_oldest_first(store):
    turns = [a_turn(f"{i:016x}", at=f"2026-01-01T00:0{i}:00") for i in range(5)]
    for turn in turns:
        await keep(store, turn, turns_kept=3)
    assert [t.turn_id for t in await store.turns.of(ANN)] == [t.turn_id for t in turns[2:]]
    assert await store.turns.get(turns[0].turn_id) is None
    last = await store.turns.last(ANN, "telegram", "c1")
    assert last is not None and last.turn_id == turns[-1].turn_id
    assert await store.turns.last(ANN, "telegram", "other-chat") is None


async def test_a_turn_is_not_kept_for_a_member_forgotten_meanwhile(store):
    turn = a_turn("f" * 16)
    await say(store, ANN, "hello")
    since = (await store.profiles.get(ANN))["since"]
    await store.forgetting.forget(ANN)
    assert await store.turns.save(turn, since=since, ttl_s=600, turns_kept=10) is None
    assert ANN not in await all_text(store)


async def test_a_reply_stored_with_its_exchange_is_kept_to_be_rated(store):
    state = await store.chats.load_state(ANN, "telegram", "c1", False)
    turn = a_turn("e" * 16)
    result = await store.chats.record_turn(
        ANN, "c1", since=state.since, user_turn={"role": "user", "text": "hi", "ts": 1.0, "tokens": 2},
        assistant_turn={"role": "assistant", "text": "a reply", "ts": 1.0, "tokens": 2}, max_turns=10,
        max_tokens=1000, ttl_s=600, display_name="Ann", persona="assistant", turn=turn,
    )  # fmt: skip
    assert result.turn_id == turn.turn_id
    kept = await store.turns.get(turn.turn_id)
    assert kept is not None and kept.reply == "a reply"
