"""Turns, ratings and canaries in Redis: what the trainer reads back, what a /forget leaves."""

from __future__ import annotations

import pytest

from brain.feedback_records import Canary, TurnRecord
from brain.store import Store, connect, ratings_key
from tests.brain.test_store import all_text, say
from tests.support.eventually import eventually

ANN, BOB = "telegram:1", "telegram:2"


@pytest.fixture
async def store(redis_server):
    s = Store(connect(redis_server.url))
    yield s
    await s.close()


def a_turn(turn_id: str, author: str = ANN, *, reply: str = "a reply", retry_of: str | None = None,
           served_by: str | None = None, chat: str = "c1", at: str = "2026-01-01T00:00:00") -> TurnRecord:  # fmt: skip
    return TurnRecord(
        turn_id=turn_id, author=author, platform="telegram", chat_id=chat, chat_kind="direct",
        prompt=[{"role": "user", "content": "PROMPT-TEXT"}], reply=reply, served_by=served_by, retry_of=retry_of,
        at=at,
    )  # fmt: skip


async def keep(store: Store, turn: TurnRecord, *, turns_kept: int = 10) -> str | None:
    await say(store, turn.author, "hello")  # the author's profile
    since = (await store.profile(turn.author))["since"]
    return await store.save_turn(turn, since=since, ttl_s=600, turns_kept=turns_kept)


async def rate(store: Store, turn: TurnRecord, rater: str, rating: int):
    return await store.rate_turn(turn, rater, rating, ttl_s=600, ratings_kept=10)


async def test_a_rating_is_kept_only_while_rater_and_author_are_both_opted_in(store):
    turn = a_turn("a" * 16)
    assert await keep(store, turn) == turn.turn_id
    await say(store, BOB, "hi")

    outcome = await rate(store, turn, BOB, 1)
    assert not outcome.kept and not outcome.rater_opted_in and not outcome.author_opted_in
    await store.opt_in(BOB, "v1")
    outcome = await rate(store, turn, BOB, 1)
    assert not outcome.kept and outcome.rater_opted_in and not outcome.author_opted_in
    assert await store.ratings(BOB) == [] and await store.like_counts() == {}

    await store.opt_in(ANN, "v1")
    outcome = await rate(store, turn, BOB, 1)
    assert outcome.kept and outcome.previous == 0
    assert [r.rating for r in await store.ratings(BOB)] == [1]
    assert await store.like_counts() == {"base": (1, 0)}


async def test_a_changed_rating_replaces_the_last_and_a_withdrawn_one_is_deleted(store):
    turn = a_turn("b" * 16, served_by="community@3")
    await keep(store, turn)
    await say(store, BOB, "hi")
    for user in (ANN, BOB):
        await store.opt_in(user, "v1")

    await rate(store, turn, BOB, 1)
    outcome = await rate(store, turn, BOB, -1)
    assert outcome.previous == 1 and [r.rating for r in await store.ratings(BOB)] == [-1]
    assert await store.like_counts() == {"community@3": (0, 1)}

    outcome = await rate(store, turn, BOB, 0)
    assert outcome.previous == -1 and not outcome.kept
    assert await store.ratings(BOB) == []
    assert await store.like_counts() == {}


async def counted_from_kept_ratings(store: Store, raters: list[str]) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = {}
    for rater in raters:
        for record in await store.ratings(rater):
            counts.setdefault(record.served_by or "base", [0, 0])[0 if record.rating > 0 else 1] += 1
    return {name: (likes, dislikes) for name, (likes, dislikes) in counts.items()}


async def test_like_counts_equal_the_kept_ratings_after_every_kind_of_deletion(store):
    """The canary promotes and rolls back by these counts: no deletion may leave a rating counted, and one member
    rating and deleting again and again must not move them."""
    cid = "telegram:3"
    turn = a_turn("9" * 16, served_by="community@2")
    await keep(store, turn)
    for user in (ANN, BOB, cid):
        await say(store, user, "hi")
        await store.opt_in(user, "v1")
    raters = [ANN, BOB, cid]

    async def invariant() -> dict[str, tuple[int, int]]:
        counts = await store.like_counts()
        assert counts == await counted_from_kept_ratings(store, raters)
        return counts

    await rate(store, turn, ANN, 1)
    assert await invariant() == {"community@2": (1, 0)}
    for _ in range(8):  # the reproducer: opt in, like, /optout delete, eight times
        await store.opt_in(BOB, "v1")
        await rate(store, turn, BOB, 1)
        await store.opt_out(BOB, delete_logs=True)
        assert await invariant() == {"community@2": (1, 0)}
    for _ in range(5):  # dislike, then /forget, five times
        await say(store, cid, "hi")
        await store.opt_in(cid, "v1")
        await rate(store, turn, cid, -1)
        await store.forget(cid)
        assert await invariant() == {"community@2": (1, 0)}
    await rate(store, turn, ANN, -1)  # changed
    assert await invariant() == {"community@2": (0, 1)}
    await rate(store, turn, ANN, 0)  # withdrawn
    assert await invariant() == {}
    await store.opt_in(BOB, "v1")
    await rate(store, turn, BOB, 1)
    await store.opt_out(BOB, delete_logs=False)  # a rating made while opted in stays after a plain opt-out
    assert await invariant() == {"community@2": (1, 0)}
    # not named in the issue: the memory TTL ends a rating (here at once)
    await rate(store, turn, ANN, 1)
    assert await invariant() == {"community@2": (2, 0)}
    await store.r.pexpire(ratings_key(ANN), 1)

    async def expired() -> bool:
        return not await store.r.exists(ratings_key(ANN))

    await eventually(expired, "Ann's ratings expired")
    assert await invariant() == {"community@2": (1, 0)}


async def test_rated_turns_pair_a_retry_with_the_first_reply_and_leave_out_authors_not_opted_in(store):
    first = a_turn("c" * 16, reply="first", at="2026-01-01T00:00:00")
    retry = a_turn("d" * 16, reply="second", retry_of=first.turn_id, at="2026-01-01T00:01:00")
    unrated = a_turn("e" * 16, reply="nobody rated me", at="2026-01-01T00:02:00")
    for turn in (first, retry, unrated):
        await keep(store, turn)
    await store.opt_in(ANN, "v1")
    await rate(store, retry, ANN, 1)

    rated = [r async for r in store.rated_turns()]
    assert [(r.turn.reply, r.score) for r in rated] == [("first", 0), ("second", 1)]
    assert {r.group for r in rated} == {first.turn_id}

    await store.opt_out(ANN, delete_logs=False)
    assert [r async for r in store.rated_turns()] == []


async def test_forget_deletes_the_members_turns_ratings_and_message_map(store):
    ann_turn, bob_turn = a_turn("1" * 16), a_turn("2" * 16, BOB)
    await keep(store, ann_turn)
    await keep(store, bob_turn)
    for user in (ANN, BOB):
        await store.opt_in(user, "v1")
    await store.map_messages(ann_turn, ["m1", "m2"], ttl_s=600, most_kept=100)
    await store.map_messages(bob_turn, ["m3"], ttl_s=600, most_kept=100)
    await rate(store, bob_turn, ANN, 1)  # Ann rates Bob's reply
    await rate(store, ann_turn, BOB, -1)  # Bob rates Ann's

    await store.forget(ANN)

    assert await store.turn(ann_turn.turn_id) is None
    assert await store.turn_of_message("telegram", "c1", "m1") is None
    assert await store.turn_of_message("telegram", "c1", "m3") == bob_turn.turn_id
    assert await store.ratings(ANN) == []
    assert ANN not in await all_text(store)
    # Bob's reply keeps no rating of Ann's; Bob's rating of Ann's reply finds no turn any more
    assert [r async for r in store.rated_turns()] == []


async def test_turns_kept_per_member_are_bounded_oldest_first(store):
    turns = [a_turn(f"{i:016x}", at=f"2026-01-01T00:0{i}:00") for i in range(5)]
    for turn in turns:
        await keep(store, turn, turns_kept=3)
    assert [t.turn_id for t in await store.user_turns(ANN)] == [t.turn_id for t in turns[2:]]
    assert await store.turn(turns[0].turn_id) is None
    last = await store.last_turn(ANN, "telegram", "c1")
    assert last is not None and last.turn_id == turns[-1].turn_id
    assert await store.last_turn(ANN, "telegram", "other-chat") is None


async def test_a_turn_is_not_kept_for_a_member_forgotten_meanwhile(store):
    turn = a_turn("f" * 16)
    await say(store, ANN, "hello")
    since = (await store.profile(ANN))["since"]
    await store.forget(ANN)
    assert await store.save_turn(turn, since=since, ttl_s=600, turns_kept=10) is None
    assert ANN not in await all_text(store)


async def test_a_canary_is_set_read_and_cleared(store):
    canary = Canary(target="community", version=4, name="community@4", path="community/v4", share=0.25,
                    min_ratings=20, started_at="2026-01-01T00:00:00")  # fmt: skip
    await store.set_canary(canary)
    assert await store.get_canary("community") == canary
    assert await store.canaries() == {"community": canary}
    assert await store.clear_canary("community")
    assert await store.get_canary("community") is None


async def test_turns_ratings_and_forget_work_on_a_redis_cluster(tmp_path):
    from tests.deploy.redis_cluster import LocalRedisCluster

    cluster = LocalRedisCluster(tmp_path / "cluster").start()
    store = Store(connect(cluster.url, cluster=True))
    try:
        turns = [a_turn(f"{i:016x}", chat=f"g{i}") for i in range(4)]  # chats spread over the masters' slots
        for turn in turns:
            assert await keep(store, turn) == turn.turn_id
            await store.map_messages(turn, [f"m{turn.chat_id}"], ttl_s=600, most_kept=100)
        await say(store, BOB, "hi")
        for user in (ANN, BOB):
            await store.opt_in(user, "v1")
        for turn in turns:
            assert (await rate(store, turn, BOB, 1)).kept
        assert await store.like_counts() == {"base": (4, 0)}
        assert len([r async for r in store.rated_turns()]) == 4
        assert (await store.take_rate(BOB))[0] >= 1

        await store.forget(ANN)
        for turn in turns:
            assert await store.turn(turn.turn_id) is None
            assert await store.turn_of_message("telegram", turn.chat_id, f"m{turn.chat_id}") is None
        assert [r async for r in store.rated_turns()] == []
    finally:
        await store.close()
        cluster.stop()
