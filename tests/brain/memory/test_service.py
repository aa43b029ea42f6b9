"""The memory service on its own, with a real Redis and no model: a scripted one answers its background prompts.

What a member would notice: facts picked out of their message are theirs (quoting it, typed), an invented one is
dropped; the turns that leave a chat's window reach its summary, unless the summary would say what nobody said.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from brain.api_models import ChatKind, FactSource, Turn
from brain.memory.records import BackgroundPrompt
from brain.memory.service import MemoryService
from brain.memory.settings import MemorySettings
from brain.store import Store
from brain.store.client import connect

USER = "telegram:1"


class ScriptedModel:
    """Answers each background prompt with the next scripted text; notes what it was asked."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[BackgroundPrompt] = []

    async def __call__(self, prompt: BackgroundPrompt) -> str:
        self.asked.append(prompt)
        return self.answers.pop(0)


@pytest.fixture
async def store(redis_server):
    s = Store(connect(redis_server.url))
    yield s
    await s.close()


def service(store: Store, model: ScriptedModel, **memory: object) -> MemoryService:
    settings = MemorySettings.model_validate({"max_turns": 2, **memory})
    return MemoryService(store, lambda: settings, model)


async def say(memory: MemoryService, text: str, reply: str = "Noted.") -> None:
    state = await memory.store.chats.load_state(USER, "telegram", "dm", False)
    now = time.time()
    await memory.record_exchange(
        USER, "dm", chat_kind=ChatKind.direct, since=state.since, summary=state.summary,
        message=Turn(role="user", text=text, ts=now, tokens=8), reply=Turn(role="assistant", text=reply, ts=now),
        display_name="Ann", persona="assistant", turns_kept=16,
    )  # fmt: skip
    await asyncio.gather(*memory.background)


async def test_facts_picked_out_of_a_message_are_the_members_own_words(store) -> None:
    model = ScriptedModel("- My name is Alice.\n- My name is Tom.\n- I have two cats.")
    memory = service(store, model, extract_facts=True)
    message = "Hi! My name is Alice and I have two cats."
    await say(memory, message)

    facts = await memory.visible_facts(USER, "dm", ChatKind.direct)
    assert [fact.text for fact in facts] == ["My name is Alice.", "I have two cats."]  # Tom was never said
    assert all(f.source is FactSource.extracted and f.quote == message and f.chat_id == "dm" for f in facts)
    assert model.asked[0].user == USER  # the member's own prompt: their /forget drops what it left cached
    assert await memory.visible_facts(USER, "g1", ChatKind.group) == []  # a direct chat's facts stay out of groups


async def test_turns_that_leave_the_window_reach_the_summary_only_as_they_were_said(store) -> None:
    model = ScriptedModel("The user has a dog called Biscuit.", "The user has a dog called Biscuit and lives on Mars.")
    memory = service(store, model, summaries=True, fold_every_turns=2)
    await say(memory, "I have a dog called Biscuit.")
    assert (await memory.chat(USER, "dm")).summary == ""  # nothing left the window yet
    await say(memory, "How do rainbows form?")  # the first exchange leaves the window: folded
    assert (await memory.chat(USER, "dm")).summary == "The user has a dog called Biscuit."
    assert model.asked[-1].keep_end and "I have a dog called Biscuit." in model.asked[-1].messages[0]["content"]

    await say(memory, "Why is the sky blue?")  # the summary it asks for invents Mars: the one before stays
    view = await memory.chat(USER, "dm")
    assert view.summary == "The user has a dog called Biscuit."
    assert [turn.text for turn in view.turns] == ["Why is the sky blue?", "Noted."]
