"""Summary folds are background work: sent with that priority, and folds of one chat that pile up become one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.client import BrainClient
from brain.api_models import ChatRequest, UserRef
from tests.support.brain_server import running_brain
from tests.support.eventually import eventually


class HeldFolds:
    """The brain's own backend, holding every summary fold until ``release`` is set."""

    def __init__(self, backend: Any, tokenizer: Any) -> None:
        self.backend, self.tokenizer = backend, tokenizer
        self.release = threading.Event()
        self.folds: list[tuple[str, str]] = []  # (prompt text, priority)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def generate(self, prompt_ids: list[int], sampling: Any, **kw: Any) -> AsyncIterator[Any]:
        text = self.tokenizer.decode(prompt_ids)
        if "Update the summary" in text:
            self.folds.append((text, kw.get("priority", "member")))
            await asyncio.to_thread(self.release.wait, 60)
        async for item in self.backend.generate(prompt_ids, sampling, **kw):
            yield item


@pytest.fixture
def brain(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Any]:
    # one exchange kept, folded as soon as it leaves: every message after the first pushes the one before out,
    # into a fold
    memory = {"max_turns": 2, "fold_every_turns": 1, "extract_facts": False}
    with running_brain(tmp_path, tiny_model_dir, memory=memory) as handle:
        yield handle


async def test_folds_of_one_chat_waiting_together_are_written_by_one_generation(brain) -> None:
    held = HeldFolds(brain.runtime.backend, brain.runtime.tokenizer)
    brain.runtime.backend = held
    client = BrainClient(brain.url, brain.api_key, retries=0)

    async def say(text: str) -> None:
        await client.chat(ChatRequest(platform="telegram", user_id="1", chat_id="c1", text=text))

    try:
        await say("ALPHA is my first note.")
        await say("BRAVO is my second note.")
        await eventually(lambda: len(held.folds) == 1, "the first fold to start")
        await say("CHARLIE is my third note.")  # its fold waits for the first
        await say("DELTA is my fourth note.")  # and this one's lines join it
        held.release.set()
        await eventually(lambda: len(held.folds) == 2 and not brain.runtime.memory.background, "the folds to finish")
    finally:
        held.release.set()
        await client.aclose()

    (first, first_priority), (second, second_priority) = held.folds
    assert "ALPHA" in first and "BRAVO" not in first
    assert "BRAVO" in second and "CHARLIE" in second and "DELTA" not in second
    assert first_priority == second_priority == "background"
    async with httpx.AsyncClient(base_url=brain.url, headers=brain.headers()) as http:
        metrics = (await http.get("/metrics")).text
    assert 'ownchat_background_generations_total{outcome="coalesced"} 1.0' in metrics


async def test_a_reset_drops_the_lines_of_a_fold_that_has_not_started(brain) -> None:
    held = HeldFolds(brain.runtime.backend, brain.runtime.tokenizer)
    brain.runtime.backend = held
    client = BrainClient(brain.url, brain.api_key, retries=0)

    async def say(text: str) -> None:
        await client.chat(ChatRequest(platform="telegram", user_id="1", chat_id="c1", text=text))

    try:
        await say("ALPHA is my first note.")
        await say("BRAVO is my second note.")
        await eventually(lambda: len(held.folds) == 1, "the first fold to start")
        await say("CHARLIE is my third note.")  # its fold waits for the first
        await client.reset(UserRef(platform="telegram", user_id="1"), "c1")
        await say("ECHO is my fifth note.")
        await say("FOXTROT is my sixth note.")  # ECHO's lines: a fold of their own, after the reset
        held.release.set()
        await eventually(lambda: len(held.folds) == 2 and not brain.runtime.memory.background, "the folds to finish")
    finally:
        held.release.set()
        await client.aclose()

    second = held.folds[1][0]
    assert "ECHO" in second
    assert "BRAVO" not in second and "CHARLIE" not in second, "what the reset cleared reached a summary"
