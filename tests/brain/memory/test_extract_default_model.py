"""With the real default model, facts are picked out of what a member says, each saying where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.client import BrainClient
from brain.api_models import ChatRequest, FactSource, UserRef
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS
from brain.memory.extract import GROUNDED_SHARE
from brain.memory.recall import terms
from tests.support.brain_server import running_brain
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

MESSAGE = "Hi! My name is Alice. I live in Lisbon and my dog is called Biscuit."


async def test_facts_are_extracted_in_the_background_from_the_members_own_words(tmp_path: Path) -> None:
    model = {"name": DEFAULT_MODEL_ALIAS, "cpu_weights": "float32", "max_new_tokens": 16, "context_tokens": 1024}
    with running_brain(tmp_path, Path(DEFAULT_MODEL_ALIAS), model=model, memory={"extract_facts": True}) as brain:
        async with BrainClient(brain.url, brain.api_key, retries=0) as client:
            user = UserRef(platform="telegram", user_id="1")
            await client.chat(ChatRequest(**user.model_dump(), chat_id="dm", text=MESSAGE, sampling={"temperature": 0}))
            facts = await eventually(lambda: client.facts(user, "dm"), "facts extracted from the message", timeout=120)

    assert any("Alice" in fact.text for fact in facts)
    said = set(terms(MESSAGE))
    for fact in facts:
        assert fact.source is FactSource.extracted and fact.quote == MESSAGE
        assert (fact.chat_id, fact.chat_kind.value) == ("dm", "direct")
        words = terms(fact.text)
        assert sum(word in said for word in words) >= GROUNDED_SHARE * len(words), f"{fact.text!r} is not theirs"
