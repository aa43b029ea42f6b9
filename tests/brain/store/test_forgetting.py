"""/forget: every key of the member goes, with what other slots hold of them (group personas they wrote, their
kept replies' message maps, ratings of their replies), and a tombstone keeps late writes out."""

from __future__ import annotations

import inspect

from brain.memory.facts import new_fact, stored_fact
from brain.store import Store, keys
from brain.store.client import connect
from brain.store.facts import FactAdded
from tests.brain.store.helpers import ANN, BOB, a_turn, keep, rate, say, turn
from tests.support.redis_dump import all_text


async def test_forget_leaves_no_trace_and_the_tombstone_blocks_late_writes(store):
    user = "telegram:4242"
    await store.profiles.opt_in(user, "v1")
    await say(store, user, "my secret FORGETME", chat="c1")
    await say(store, user, "more FORGETME", chat="c2")
    state = await store.chats.load_state(user, "telegram", "c1", False)  # a request in flight
    await store.forgetting.forget(user)
    late = await store.chats.record_turn(
        user, "c1", since=state.since, user_turn=turn("user", "late FORGETME"),
        assistant_turn=turn("assistant", "x"), max_turns=10, max_tokens=1000, ttl_s=60,
        display_name="Ann", persona="assistant",
    )  # fmt: skip
    assert not late.stored and not late.logged
    dump = await all_text(store)
    assert "4242" not in dump and "FORGETME" not in dump
    assert await store.tombstones.forgotten_at(user) is not None
    assert [e async for e in store.training_log.entries(user)] == []


async def test_every_key_of_a_member_is_one_that_forget_deletes(store):
    """A key added to the layout for a member must be added to forget's list too (forgetting.member_keys)."""
    await say(store, ANN, "hello", chat="c1")
    forgotten = set(await store.forgetting.user_keys(ANN))
    for name, build in inspect.getmembers(keys, inspect.isfunction):
        params = list(inspect.signature(build).parameters)
        if params[:1] == ["user"]:
            key = build(ANN) if params == ["user"] else build(ANN, "c1")
            assert key in forgotten, f"keys.{name} is a member's key that /forget leaves behind"


async def test_one_users_keys_share_a_cluster_slot(store):
    from redis.crc import key_slot

    user = "telegram:77"
    await say(store, user, "hi")
    await store.profiles.opt_in(user, "v1")
    user_keys = await store.forgetting.user_keys(user)
    assert len({key_slot(k.encode()) for k in user_keys}) == 1


async def test_forget_deletes_the_group_personas_the_user_set_and_no_others(store):
    ann, bob = "telegram:1", "telegram:2"
    pirate, coach = {"name": "pirate", "custom": False}, {"name": "coach", "custom": False}
    secret = {"name": "custom", "custom": True, "system_prompt": "ANN-CANARY persona", "greeting": ""}
    await store.personas.set_chat("telegram", "g1", secret, author=ann)
    await store.personas.set_chat("telegram", "g2", coach, author=bob)
    await store.personas.set_chat("telegram", "g3", secret, author=ann)
    await store.personas.set_chat("telegram", "g3", pirate, author=bob)  # Bob replaced Ann's persona there
    assert await store.personas.of_chat("telegram", "g1") == secret  # the author is not part of the choice

    deleted = await store.forgetting.forget(ann)

    assert await store.personas.of_chat("telegram", "g1") is None
    assert await store.personas.of_chat("telegram", "g2") == coach
    assert await store.personas.of_chat("telegram", "g3") == pirate
    assert deleted >= 2  # her persona in g1 and the set that listed it
    dump = await all_text(store)
    assert "ANN-CANARY" not in dump and ann not in dump
    await store.forgetting.forget(bob)
    assert await store.personas.of_chat("telegram", "g2") is None
    assert await store.personas.of_chat("telegram", "g3") is None


async def test_forget_deletes_the_members_turns_ratings_and_message_map(store):
    ann_turn, bob_turn = a_turn("1" * 16), a_turn("2" * 16, BOB)
    await keep(store, ann_turn)
    await keep(store, bob_turn)
    for user in (ANN, BOB):
        await store.profiles.opt_in(user, "v1")
    await store.messages.map(ann_turn, ["m1", "m2"], ttl_s=600, most_kept=100)
    await store.messages.map(bob_turn, ["m3"], ttl_s=600, most_kept=100)
    await rate(store, bob_turn, ANN, 1)  # Ann rates Bob's reply
    await rate(store, ann_turn, BOB, -1)  # Bob rates Ann's

    await store.forgetting.forget(ANN)

    assert await store.turns.get(ann_turn.turn_id) is None
    assert await store.messages.turn_of("telegram", "c1", "m1") is None
    assert await store.messages.turn_of("telegram", "c1", "m3") == bob_turn.turn_id
    assert await store.ratings.of(ANN) == []
    assert ANN not in await all_text(store)
    # Bob's reply keeps no rating of Ann's; Bob's rating of Ann's reply finds no turn any more
    assert [r async for r in store.ratings.rated_turns()] == []


async def test_no_fact_of_a_message_is_stored_after_its_author_was_forgotten(store):
    result = await say(store, ANN, "I have a cat CANARY-LATE", "dm")
    await store.forgetting.forget(ANN)
    text = "I have a cat CANARY-LATE"
    late = stored_fact(new_fact(text, "extracted", "dm", "direct", quote=text))
    added = await store.facts.add(ANN, late, max_facts=3, ttl_s=3600, since=result.since)
    assert added is FactAdded.forgotten
    assert "CANARY-LATE" not in await all_text(store)


async def test_facts_and_earlier_turns_are_deleted_by_forget(store):
    bees = stored_fact(new_fact("I keep bees CANARY-FACT", "pinned", "dm", "direct"))
    await store.facts.add(ANN, bees, max_facts=3, ttl_s=60)
    for i in range(4):
        await say(store, ANN, f"CANARY-TURN {i}", "dm", max_turns=4, keep_earlier=100)
    assert await store.chats.earlier_turns(ANN) != []
    await store.forgetting.forget(ANN)
    text = await all_text(store)
    assert "CANARY-FACT" not in text and "CANARY-TURN" not in text


async def test_turns_ratings_and_forget_work_on_a_redis_cluster(tmp_path):
    from tests.deploy.redis_cluster import LocalRedisCluster

    cluster = LocalRedisCluster(tmp_path / "cluster").start()
    store = Store(connect(cluster.url, cluster=True))
    try:
        turns = [a_turn(f"{i:016x}", chat=f"g{i}") for i in range(4)]  # chats spread over the masters' slots
        for kept in turns:
            assert await keep(store, kept) == kept.turn_id
            await store.messages.map(kept, [f"m{kept.chat_id}"], ttl_s=600, most_kept=100)
        await say(store, BOB, "hi")
        for user in (ANN, BOB):
            await store.profiles.opt_in(user, "v1")
        for kept in turns:
            assert (await rate(store, kept, BOB, 1)).kept
        assert await store.ratings.like_counts() == {"base": (4, 0)}
        assert len([r async for r in store.ratings.rated_turns()]) == 4
        assert (await store.rate_limits.take(BOB))[0] >= 1

        await store.forgetting.forget(ANN)
        for kept in turns:
            assert await store.turns.get(kept.turn_id) is None
            assert await store.messages.turn_of("telegram", kept.chat_id, f"m{kept.chat_id}") is None
        assert [r async for r in store.ratings.rated_turns()] == []
    finally:
        await store.close()
        cluster.stop()
