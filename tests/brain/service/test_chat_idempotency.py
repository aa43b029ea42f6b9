"""A chat request asked again with the same idempotency key (a bot retrying a member's message) is answered,
and its turn is stored once: a real brain (tiny model) over a real redis-server."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from bot.client import BrainClient
from brain.api_models import ChatRequest, UserRef

ANN = UserRef(platform="telegram", user_id="7")


def message(text: str, request_id: str | None, user: UserRef = ANN, chat: str = "c1") -> ChatRequest:
    return ChatRequest(
        platform=user.platform,
        user_id=user.user_id,
        chat_id=chat,
        text=text,
        request_id=request_id,
        sampling={"temperature": 0},
    )


@pytest.fixture
async def client(brain):
    async with BrainClient(brain.url, brain.api_key, retries=0) as client:
        yield client


async def test_a_message_asked_again_with_its_key_is_answered_with_the_kept_reply_and_stored_once(client):
    first = await client.chat(message("hello there", "c1:41"))
    again = await client.chat(message("hello there", "c1:41"))
    streamed = [item async for item in client.chat_stream(message("hello there", "c1:41"))]

    # the member sees the reply that was kept, and it can be rated: its turn id comes with it
    assert first.turn_id is not None
    assert again == first
    assert streamed[-1] == first and "".join(str(item) for item in streamed[:-1]) == first.reply
    memory = await client.memory(ANN, "c1")
    assert [(t.role, t.text) for t in memory.turns] == [("user", "hello there"), ("assistant", first.reply)]
    assert await said(client, ANN, "c1") == ["hello there"]


async def test_other_keys_other_members_and_no_key_store_every_turn(client):
    bob = UserRef(platform="telegram", user_id="8")
    await client.chat(message("one", "c1:1"))
    await client.chat(message("two", "c1:2"))
    await client.chat(message("three", None, chat="c2"))
    await client.chat(message("three", None, chat="c2"))
    await client.chat(message("bob's", "c1:1", bob))  # the same key is another message when another member sends it

    assert await said(client, ANN, "c1") == ["one", "two"]
    assert await said(client, ANN, "c2") == ["three", "three"]
    assert await said(client, bob, "c1") == ["bob's"]


async def test_a_message_asked_again_while_its_first_reply_streams_gets_that_reply(client):
    first, again = (client.chat_stream(message("tell me more", "c1:42")) for _ in range(2))
    started = [await anext(first)]  # the first is being answered (joined if still generating, else kept)
    joined = [item async for item in again]
    whole = started + [item async for item in first]

    assert whole[-1].turn_id is not None and joined[-1] == whole[-1]
    assert "".join(str(item) for item in joined[:-1]) == whole[-1].reply
    assert await said(client, ANN, "c1") == ["tell me more"]


async def said(client: BrainClient, user: UserRef, chat: str) -> list[str]:
    """What the brain remembers the member saying in the chat."""
    return [t.text for t in (await client.memory(user, chat)).turns if t.role == "user"]


@pytest.mark.parametrize("request_id", ["", "has space", "x" * 65, "a/b", "{tag}"])
def test_a_key_outside_its_pattern_is_refused(request_id: str):
    with pytest.raises(ValidationError):
        message("hi", request_id)


async def test_the_brain_refuses_a_malformed_key_and_stores_nothing(brain, client):
    body = message("hi", None).model_dump(mode="json") | {"request_id": "x" * 65}
    async with httpx.AsyncClient(base_url=brain.url, headers=brain.headers()) as http:
        response = await http.post("/v1/chat", json=body)
    assert response.status_code == 422
    assert await said(client, ANN, "c1") == []


async def test_forget_leaves_no_key_that_names_the_member(client, brain):
    import redis

    await client.chat(message("hello there", "c1:41"))
    await client.forget(ANN)
    names = redis.Redis.from_url(brain.redis.url, decode_responses=True).keys("*")
    assert not [key for key in names if "telegram:7" in key], names
    again = await client.chat(message("hello there", "c1:41"))  # a new member with the same id: stored anew
    assert again.reply and await said(client, ANN, "c1") == ["hello there"]
