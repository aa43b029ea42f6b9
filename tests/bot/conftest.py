"""What every bot test may use: the one fake brain (tests/support/fake_brain.py), and with a real brain, the
test's own view of its state (its HTTP API, and its Redis through the brain's store)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.client import BrainClient
from brain.store import Store
from tests.support.brain_server import BrainHandle
from tests.support.brain_state import brain_store
from tests.support.fake_brain import FakeBrain


@pytest.fixture
async def brain_api(brain: BrainHandle) -> AsyncIterator[BrainClient]:
    """The test's own view of the brain's state, through its HTTP API."""
    async with BrainClient(brain.url, brain.api_key) as client:
        yield client


@pytest.fixture
async def store(brain: BrainHandle) -> AsyncIterator[Store]:
    async with brain_store(brain) as store:
        yield store


@pytest.fixture
async def fake_brain() -> AsyncIterator[FakeBrain]:
    async with FakeBrain() as brain:
        yield brain
