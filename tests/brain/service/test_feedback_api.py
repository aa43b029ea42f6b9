"""Members rate the bot's replies and ask for another one: a real brain (tiny model) over a real redis-server,
through the bots' own client."""

from __future__ import annotations

import pytest

from bot.client import BrainClient, BrainError
from brain.api_feedback import FeedbackRequest, TurnMessages
from brain.api_models import ChatKind, ChatReply, ChatRequest, UserRef
from brain.store import Store
from brain.store.client import connect
from tests.support.redis_dump import all_text

ANN = UserRef(platform="telegram", user_id="1")
BOB = UserRef(platform="telegram", user_id="2")


def message(text: str, user: UserRef = ANN, chat: str = "c1", **kw) -> ChatRequest:
    return ChatRequest(platform=user.platform, user_id=user.user_id, chat_id=chat, text=text, **kw)


def rating(value: int, rater: UserRef = ANN, chat: str = "c1", **target) -> FeedbackRequest:
    return FeedbackRequest(
        platform=rater.platform, user_id=rater.user_id, chat_id=chat, rating=value, kind="reaction", **target
    )


@pytest.fixture
async def client(brain):
    async with BrainClient(brain.url, brain.api_key, retries=0) as client:
        yield client


@pytest.fixture
async def store(brain):
    s = Store(connect(brain.redis.url))
    yield s
    await s.close()


async def test_a_rated_reply_is_kept_for_training_and_a_withdrawn_rating_is_gone(client, store):
    await client.opt_in(ANN)
    reply = await client.chat(message("hello there"))
    assert reply.turn_id

    result = await client.feedback(rating(1, turn_id=reply.turn_id))
    assert result.stored and result.turn_id == reply.turn_id and result.rating == 1
    assert [r.rating for r in (await client.export(ANN)).ratings] == [1]
    assert await store.ratings.like_counts() == {"base": (1, 0)}
    rated = [r async for r in store.ratings.rated_turns()]
    assert [(r.turn.reply, r.score) for r in rated] == [(reply.reply, 1)]
    assert rated[0].turn.prompt[-1] == {"role": "user", "content": "hello there"}

    changed = await client.feedback(rating(-1, turn_id=reply.turn_id))
    assert changed.stored and [r.rating for r in (await client.export(ANN)).ratings] == [-1]

    withdrawn = await client.feedback(rating(0, turn_id=reply.turn_id))
    assert not withdrawn.stored and "withdrawn" in withdrawn.reason
    assert (await client.export(ANN)).ratings == []
    assert [r async for r in store.ratings.rated_turns()] == []
    assert await store.ratings.like_counts() == {}


async def test_a_streamed_reply_ends_with_its_turn_id(client):
    items = [item async for item in client.chat_stream(message("tell me a story", stream=True))]
    done = items[-1]
    assert isinstance(done, ChatReply) and done.turn_id
    result = await client.feedback(rating(-1, turn_id=done.turn_id))
    assert result.turn_id == done.turn_id and not result.stored  # Ann has not opted in


async def test_a_reaction_on_any_piece_of_a_reply_rates_its_turn(client):
    await client.opt_in(ANN)
    reply = await client.chat(message("split me"))
    assert reply.turn_id
    mapped = await client.link_turn_messages(
        reply.turn_id, TurnMessages(platform="telegram", chat_id="c1", message_ids=["501", "502"])
    )
    assert mapped.mapped == 2

    result = await client.feedback(rating(1, message_id="502"))
    assert result.stored and result.turn_id == reply.turn_id


async def test_without_both_consents_nothing_is_kept_and_the_reply_says_why(client, store):
    group = {"chat_kind": ChatKind.group}
    reply = await client.chat(message("hi all", chat="g1", **group))
    assert reply.turn_id

    not_in = await client.feedback(rating(1, BOB, "g1", turn_id=reply.turn_id))
    assert not not_in.stored and "you have not opted in" in not_in.reason

    await client.opt_in(BOB)
    author_out = await client.feedback(rating(1, BOB, "g1", turn_id=reply.turn_id))
    assert not author_out.stored and "has not opted in" in author_out.reason

    assert (await client.export(BOB)).ratings == []
    assert [r async for r in store.ratings.rated_turns()] == [] and await store.ratings.like_counts() == {}

    await client.opt_in(ANN)
    both = await client.feedback(rating(1, BOB, "g1", turn_id=reply.turn_id))
    assert both.stored


async def test_unknown_expired_or_other_chats_turns_are_a_clear_404(client):
    reply = await client.chat(message("hello"))
    assert reply.turn_id
    for request in (
        rating(1, turn_id="0" * 16),
        rating(1, message_id="999"),
        rating(1, chat="elsewhere", turn_id=reply.turn_id),
    ):
        with pytest.raises(BrainError) as error:
            await client.feedback(request)
        assert error.value.status == 404 and error.value.code == "unknown_turn"
    with pytest.raises(BrainError) as error:
        await client.link_turn_messages("f" * 16, TurnMessages(platform="telegram", chat_id="c1", message_ids=["1"]))
    assert error.value.status == 404 and error.value.code == "unknown_turn"
    with pytest.raises(BrainError) as error:
        await client.chat(message("", retry_of="0" * 16))
    assert error.value.status == 404 and error.value.code == "unknown_turn"


async def test_ratings_count_against_the_raters_rate_limit(client, brain):
    reply = await client.chat(message("hello"))
    assert reply.turn_id
    limit = brain.settings.limits.rate_per_minute
    for _ in range(limit - 1):  # the chat message counted too
        await client.feedback(rating(1, turn_id=reply.turn_id))
    with pytest.raises(BrainError) as error:
        await client.feedback(rating(1, turn_id=reply.turn_id))
    assert error.value.status == 429 and error.value.code == "rate_limited"


async def test_a_retry_answers_the_same_message_again_and_pairs_the_two_replies(client, store):
    await client.opt_in(ANN)
    first = await client.chat(message("tell me a joke"))
    second = await client.chat(message("", retry_of="last"))
    assert first.turn_id and second.turn_id and second.turn_id != first.turn_id

    # the memory keeps the message once, with the first reply
    memory = await client.memory(ANN, "c1")
    assert [(t.role, t.text) for t in memory.turns] == [("user", "tell me a joke"), ("assistant", first.reply)]

    await client.link_turn_messages(second.turn_id, TurnMessages(platform="telegram", chat_id="c1", message_ids=["77"]))
    third = await client.chat(message("", retry_message="77"))  # /retry as a reply to the second answer
    assert third.turn_id

    await client.feedback(rating(-1, turn_id=first.turn_id))
    rated = [r async for r in store.ratings.rated_turns()]
    assert {r.turn.turn_id for r in rated} == {first.turn_id, second.turn_id, third.turn_id}
    assert {r.group for r in rated} == {first.turn_id}
    assert {r.turn.prompt[-1]["content"] for r in rated} == {"tell me a joke"}
    assert [r.score for r in rated if r.turn.turn_id == first.turn_id] == [-1]


async def test_a_member_cannot_retry_another_members_reply(client):
    group = {"chat_kind": ChatKind.group}
    reply = await client.chat(message("mine", chat="g1", **group))
    assert reply.turn_id
    with pytest.raises(BrainError) as error:
        await client.chat(message("", BOB, "g1", retry_of=reply.turn_id, **group))
    assert error.value.status == 404 and error.value.code == "unknown_turn"


async def test_forget_removes_the_members_ratings_and_turns(client, store):
    for user in (ANN, BOB):
        await client.opt_in(user)
    ann_reply = await client.chat(message("ANN-SECRET hello", chat="g1", chat_kind=ChatKind.group))
    bob_reply = await client.chat(message("bob here", BOB, chat="g1", chat_kind=ChatKind.group))
    assert ann_reply.turn_id and bob_reply.turn_id
    await client.link_turn_messages(
        ann_reply.turn_id, TurnMessages(platform="telegram", chat_id="g1", message_ids=["900"])
    )
    await client.feedback(rating(1, ANN, "g1", turn_id=bob_reply.turn_id))
    await client.feedback(rating(1, BOB, "g1", turn_id=ann_reply.turn_id))

    await client.forget(ANN)

    assert (await client.export(ANN)).ratings == []
    text = await all_text(store)
    assert "ANN-SECRET" not in text and "telegram:1" not in text
    with pytest.raises(BrainError) as error:
        await client.feedback(rating(1, BOB, "g1", message_id="900"))
    assert error.value.status == 404
    # Bob's reply lost Ann's rating; Bob's rating of Ann's reply finds no turn
    assert [r async for r in store.ratings.rated_turns()] == []


async def test_optout_with_delete_removes_the_members_ratings_and_the_notice_says_so(client):
    await client.opt_in(ANN)
    reply = await client.chat(message("hello"))
    assert reply.turn_id and (await client.feedback(rating(1, turn_id=reply.turn_id))).stored
    await client.opt_out(ANN)
    assert len((await client.export(ANN)).ratings) == 1  # kept while given with consent, like the log
    await client.opt_out(ANN, delete_logs=True)
    assert (await client.export(ANN)).ratings == []
    assert "your ratings" in (await client.privacy()).text
