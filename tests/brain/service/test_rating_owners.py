"""Ratings and message mappings belong to a chat: only a member of the turn's chat rates it (in a direct chat, the
member it answered), and only the turn's own chat maps its messages, each message once, at most
MAX_MESSAGES_PER_TURN a turn, later calls counted against the rate limit."""

from __future__ import annotations

import pytest

from bot.client import BrainClient, BrainError
from brain.api_feedback import MAX_MESSAGES_PER_TURN, TurnMessages
from brain.api_models import ChatKind
from brain.store import Store, keys
from brain.store.client import connect
from tests.brain.service.test_feedback_api import ANN, BOB, message, rating


@pytest.fixture
async def client(brain):
    async with BrainClient(brain.url, brain.api_key, retries=0) as client:
        yield client


@pytest.fixture
async def store(brain):
    s = Store(connect(brain.redis.url))
    yield s
    await s.close()


async def refused(call) -> BrainError:
    with pytest.raises(BrainError) as error:
        await call
    return error.value


async def test_only_the_member_of_a_direct_chat_rates_its_turns(client, store):
    for user in (ANN, BOB):
        await client.opt_in(user)
    reply = await client.chat(message("hello", chat="ann-dm"))
    await client.link_turn_messages(reply.turn_id, TurnMessages(platform="telegram", chat_id="ann-dm",
                                                                message_ids=["1"]))  # fmt: skip
    # the issue's: Bob rates Alice's direct reply by its mapped message id, with her chat's id
    by_message = await refused(client.feedback(rating(1, BOB, "ann-dm", message_id="1")))
    # not named: by its turn id, claiming the chat is a group
    as_group = rating(1, BOB, "ann-dm", turn_id=reply.turn_id).model_copy(update={"chat_kind": ChatKind.group})
    by_turn = await refused(client.feedback(as_group))
    for error in (by_message, by_turn):
        assert error.status == 404 and error.code == "unknown_turn"
    assert (await client.export(BOB)).ratings == [] and await store.ratings.like_counts() == {}
    assert (await client.feedback(rating(1, ANN, "ann-dm", message_id="1"))).stored


async def test_a_group_turn_is_rated_by_members_the_platform_shows_there(client):
    for user in (ANN, BOB):
        await client.opt_in(user)
    group = {"chat_kind": ChatKind.group}
    reply = await client.chat(message("hi all", chat="g1", **group))
    assert (await client.feedback(rating(1, BOB, "g1", turn_id=reply.turn_id, **group))).stored
    error = await refused(client.feedback(rating(1, BOB, "g2", turn_id=reply.turn_id, **group)))
    assert error.status == 404


async def test_a_message_is_mapped_once_and_never_moved_to_another_turn(client, store):
    group = {"chat_kind": ChatKind.group}
    ann = await client.chat(message("mine", chat="g1", **group))
    bob = await client.chat(message("mine too", BOB, "g1", **group))
    mapped = await client.link_turn_messages(bob.turn_id, TurnMessages(platform="telegram", chat_id="g1",
                                                                       message_ids=["b1"]))  # fmt: skip
    assert mapped.mapped == 1
    # the issue's: Bob's message remapped to Ann's turn, so reactions on it rate her reply
    moved = await client.link_turn_messages(ann.turn_id, TurnMessages(platform="telegram", chat_id="g1",
                                                                      message_ids=["b1", "a1"]))  # fmt: skip
    assert moved.mapped == 1
    assert await store.messages.turn_of("telegram", "g1", "b1") == bob.turn_id
    assert await store.messages.turn_of("telegram", "g1", "a1") == ann.turn_id
    # not named: the turn's messages mapped from another chat or platform
    for other in (TurnMessages(platform="telegram", chat_id="g2", message_ids=["x"]),
                  TurnMessages(platform="discord", chat_id="g1", message_ids=["x"])):  # fmt: skip
        error = await refused(client.link_turn_messages(ann.turn_id, other))
        assert error.status == 404


async def test_mapping_calls_are_bounded_per_turn_and_counted_against_the_rate_limit(client, store, brain):
    """The issue's flood: hundreds of calls with fresh message ids for one turn filled a group's map."""
    reply = await client.chat(message("hello", chat="g1", chat_kind=ChatKind.group))
    limit = brain.settings.limits.rate_per_minute
    mapped, calls = 0, 0
    with pytest.raises(BrainError) as error:
        for calls in range(1, 10 * limit):  # noqa: B007
            ids = [f"m{calls}-{i}" for i in range(MAX_MESSAGES_PER_TURN)]
            answer = await client.link_turn_messages(
                reply.turn_id, TurnMessages(platform="telegram", chat_id="g1", message_ids=ids)
            )
            mapped += answer.mapped
    assert error.value.status == 429 and error.value.code == "rate_limited"
    assert mapped == MAX_MESSAGES_PER_TURN  # the first call's; later ones map nothing more for this turn
    # the chat message counted once, the first mapping not at all, each later call once: call limit + 1 is refused
    assert calls == limit + 1
    assert len(await store.r.hkeys(keys.message_turns("telegram", "g1"))) == MAX_MESSAGES_PER_TURN
