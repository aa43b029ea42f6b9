"""With the real default model and summaries on: /memory shows a summary only if it holds what was said."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.client import BrainClient
from brain.api_models import ChatRequest, UserRef
from brain.engine.backend import Generated
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS
from brain.memory.summary import faithful
from tests.brain.service.test_memory_api import settle
from tests.support.brain_server import running_brain

pytestmark = pytest.mark.integration


class SummariesWritten:
    """The brain's own backend, keeping the text of every summary the model wrote (before any check)."""

    def __init__(self, backend: Any, tokenizer: Any):
        self.backend, self.tokenizer, self.summaries = backend, tokenizer, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def generate(self, prompt_ids: list[int], sampling: Any, **kw: Any) -> AsyncIterator[Any]:
        folding = "Update the summary" in self.tokenizer.decode(prompt_ids)
        async for item in self.backend.generate(prompt_ids, sampling, **kw):
            if folding and isinstance(item, Generated):
                self.summaries.append(item.text)
            yield item


async def test_a_summary_holds_only_what_was_said_or_is_not_shown(tmp_path: Path) -> None:
    model = {"name": DEFAULT_MODEL_ALIAS, "cpu_weights": "float32", "max_new_tokens": 32, "context_tokens": 1024}
    memory = {"summaries": True, "fold_every_turns": 2, "max_turns": 2, "max_tokens": 1536}
    with running_brain(tmp_path, Path(DEFAULT_MODEL_ALIAS), model=model, memory=memory) as brain:
        written = SummariesWritten(brain.runtime.backend, brain.runtime.tokenizer)
        brain.runtime.backend = written
        async with BrainClient(brain.url, brain.api_key, retries=0) as client:
            user = UserRef(platform="telegram", user_id="1")

            async def say(text: str) -> str:
                request = ChatRequest(**user.model_dump(), chat_id="dm", text=text, sampling={"temperature": 0})
                return (await client.chat(request)).reply

            opening = "Hi! My name is Alice. I live in Lisbon and my dog is called Biscuit."
            folded = [opening, await say(opening)]
            await say("What is a good book for a long train ride?")  # the first exchange leaves the window
            await settle(brain)
            shown = (await client.memory(user, "dm")).summary

    assert len(written.summaries) == 1, "one fold, of the first exchange"
    assert faithful(shown, folded), f"/memory shows words nobody said: {shown!r}"
    if not faithful(written.summaries[0], folded):
        assert shown == "", "an invented summary was kept"
