"""What a test reads of a real brain's Redis, through the brain's own store (brain/store/): which reply a
platform message shows, and the reply's record. Reading it this way tells when a bot has mapped its reply's
messages, which no member can see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.client import BrainClient
from brain.api_models import UserRef
from brain.feedback_records import TurnRecord
from brain.store import Store
from brain.store.client import connect
from tests.support.brain_server import BrainHandle
from tests.support.eventually import eventually


@asynccontextmanager
async def brain_store(brain: BrainHandle) -> AsyncIterator[Store]:
    """A store on the brain's Redis, on the test's own event loop (the brain's runs in another thread)."""
    store = Store(connect(brain.redis.url))
    try:
        yield store
    finally:
        await store.close()


async def turn_shown_by(store: Store, platform: str, chat_id: object, message_id: object) -> TurnRecord:
    """The reply a platform message shows, once the bot has told the brain so."""

    async def mapped() -> TurnRecord | None:
        turn_id = await store.messages.turn_of(platform, str(chat_id), str(message_id))
        return await store.turns.get(turn_id) if turn_id else None

    return await eventually(mapped, f"{platform} message {message_id} mapped to its reply")


async def kept_ratings_become(brain_api: BrainClient, user: UserRef, expected: list[tuple[str, int]]) -> None:
    """Wait until the ratings kept of ``user`` (their export) are ``expected``: (turn id, rating) pairs."""

    async def kept() -> bool:
        ratings = (await brain_api.export(user)).ratings
        return [(r.turn_id, r.rating) for r in ratings] == expected

    await eventually(kept, f"the kept ratings of {user.key} to be {expected}")
