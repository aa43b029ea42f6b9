"""What every bot test may use: the one fake brain (tests/support/fake_brain.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.fake_brain import FakeBrain


@pytest.fixture
async def fake_brain() -> AsyncIterator[FakeBrain]:
    async with FakeBrain() as brain:
        yield brain
