"""BrainClient asks again only where that cannot store a chat turn twice: after a 503 or a refused
connection, never after the brain went quiet mid-request or once a streamed reply had begun."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.client import BrainClient, BrainError, BrainUnavailable
from brain.api_models import ChatReply, ChatRequest
from tests.support.fake_brain import API_KEY, CutAfter, FakeBrain, Refuse, Silent

REQUEST = ChatRequest(platform="telegram", user_id="1", chat_id="1", text="hello there")
BUSY = Refuse(503, "busy", "Too busy.")


@pytest.fixture
async def client(fake_brain: FakeBrain) -> AsyncIterator[BrainClient]:
    async with BrainClient(fake_brain.url, API_KEY, timeout=0.5, retries=2, backoff_s=0.01) as client:
        yield client


async def collect(client: BrainClient) -> list[str | ChatReply]:
    return [piece async for piece in client.chat_stream(REQUEST)]


async def test_a_busy_brain_is_asked_again_and_answers(fake_brain: FakeBrain, client: BrainClient) -> None:
    fake_brain.fail_next("chat", BUSY, times=2)
    assert (await client.chat(REQUEST)).reply == "You said: hello there"
    assert fake_brain.events == ["refused hello there", "refused hello there", "start hello there", "end hello there"]

    fake_brain.fail_next("chat", BUSY)
    pieces = await collect(client)
    assert pieces[:2] == ["You said:", " hello there"] and pieces[-1].reply == "You said: hello there"
    assert len(fake_brain.requests) == 5


async def test_a_brain_that_went_quiet_is_not_asked_the_same_turn_again(
    fake_brain: FakeBrain, client: BrainClient
) -> None:
    fake_brain.fail_next("chat", Silent())
    with pytest.raises(BrainUnavailable) as caught:
        await client.chat(REQUEST)
    assert not caught.value.never_handled and len(fake_brain.requests) == 1

    fake_brain.fail_next("chat", Silent())
    with pytest.raises(BrainUnavailable):
        await collect(client)
    assert len(fake_brain.requests) == 2


async def test_a_stream_cut_off_midway_is_not_asked_again(fake_brain: FakeBrain, client: BrainClient) -> None:
    fake_brain.fail_next("chat", CutAfter(1))
    shown: list[str | ChatReply] = []
    with pytest.raises(BrainUnavailable):
        async for piece in client.chat_stream(REQUEST):
            shown.append(piece)
    assert shown == ["You said:"] and fake_brain.events == ["start hello there", "cut hello there"]


async def test_a_read_is_asked_again_after_a_timeout(fake_brain: FakeBrain, client: BrainClient) -> None:
    fake_brain.fail_next("stats", Silent())
    stats = await client.stats()
    assert stats.model == "fake" and fake_brain.asked["stats"] == 2


async def test_a_refused_connection_counts_as_never_handled(fake_brain: FakeBrain) -> None:
    await fake_brain.stop()  # the port now refuses connections
    async with BrainClient(fake_brain.url, API_KEY, retries=1, backoff_s=0.01) as client:
        with pytest.raises(BrainUnavailable) as caught:
            await client.chat(REQUEST)
    assert caught.value.never_handled and caught.value.code == "unreachable"


async def test_an_error_the_brain_explains_is_passed_on_and_not_asked_again(
    fake_brain: FakeBrain, client: BrainClient
) -> None:
    fake_brain.fail_next("chat", Refuse(429, "rate_limited", "Too many messages.", retry_after=5))
    with pytest.raises(BrainError) as caught:
        await client.chat(REQUEST)
    assert not isinstance(caught.value, BrainUnavailable)
    assert (caught.value.status, caught.value.message, caught.value.retry_after) == (429, "Too many messages.", 5.0)
    assert len(fake_brain.requests) == 1
