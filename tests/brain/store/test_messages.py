"""Which turn a platform message shows: each message mapped once, a turn's messages bounded, a first mapping only
when asked."""

from __future__ import annotations

from tests.brain.store.helpers import a_turn


async def test_a_message_shows_the_turn_it_was_mapped_to_first(store):
    first, second = a_turn("1" * 16), a_turn("2" * 16)
    assert await store.messages.map(first, ["m1", "m2"], ttl_s=600, most_kept=100) == 2
    assert await store.messages.map(second, ["m2", "m3"], ttl_s=600, most_kept=100) == 1, "m2 shows the first"
    assert await store.messages.turn_of("telegram", "c1", "m2") == first.turn_id
    assert await store.messages.turn_of("telegram", "c1", "m3") == second.turn_id
    assert await store.messages.turn_of("telegram", "other", "m3") is None
    mapped = await store.messages.mapped([first])
    assert mapped == [("telegram", "c1", "m1", first.turn_id), ("telegram", "c1", "m2", first.turn_id)]


async def test_a_turns_messages_are_bounded_and_a_first_mapping_happens_once(store):
    turn = a_turn("3" * 16)
    assert await store.messages.map(turn, [f"m{i}" for i in range(5)], ttl_s=600, most_kept=100, most_per_turn=3) == 3
    assert await store.messages.map(turn, ["late"], ttl_s=600, most_kept=100, first_only=True) is None
    assert await store.messages.turn_of("telegram", "c1", "late") is None


async def test_a_chats_map_keeps_only_the_newest_messages(store):
    for i in range(5):
        await store.messages.map(a_turn(f"{i:016x}"), [f"m{i}"], ttl_s=600, most_kept=3)
    assert [await store.messages.turn_of("telegram", "c1", f"m{i}") is not None for i in range(5)] == [
        False, False, True, True, True,
    ]  # fmt: skip
