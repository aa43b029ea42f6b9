"""Members pin, list and forget facts through the API; export and /forget cover them; and a member's memory
reaches only their own prompts: in a group, never another member's, nor what they said in private."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.client import BrainClient
from brain.api_models import ChatKind, ChatRequest, FactPin, UserRef
from brain.store import Store
from brain.store.client import connect
from tests.support.eventually import eventually
from tests.support.redis_dump import all_text


@pytest.fixture
async def client(brain):
    c = BrainClient(brain.url, brain.api_key, retries=0)
    yield c
    await c.aclose()


@pytest.fixture
async def http(brain):
    async with httpx.AsyncClient(base_url=brain.url, headers=brain.headers(), timeout=60) as c:
        yield c


def facts_path(user: str) -> str:
    return f"/v1/users/telegram/{user}/facts"


async def pin(http, user: str, text: str, chat: str = "dm", kind: ChatKind = ChatKind.direct) -> httpx.Response:
    body = FactPin(platform="telegram", user_id=user, chat_id=chat, chat_kind=kind, text=text)
    return await http.post(facts_path(user), json=body.model_dump(mode="json"))


async def listed(http, user: str, chat: str = "dm", kind: str = "direct") -> list[str]:
    response = await http.get(facts_path(user), params={"chat_id": chat, "chat_kind": kind})
    response.raise_for_status()
    return [f["text"] for f in response.json()["facts"]]


async def test_a_member_pins_lists_and_forgets_facts(http):
    first = await pin(http, "1", "My name is Ann.")
    assert first.status_code == 201 and first.json()["source"] == "pinned"
    await pin(http, "1", "I live in Lisbon.")
    await pin(http, "1", "I play the cello in this group.", chat="g1", kind=ChatKind.group)
    assert await listed(http, "1") == ["My name is Ann.", "I live in Lisbon.", "I play the cello in this group."]
    # a listing in a group is as public as the group: only what was said there
    assert await listed(http, "1", "g1", "group") == ["I play the cello in this group."]
    assert await listed(http, "1", "g2", "group") == []

    forgotten = await http.delete(f"{facts_path('1')}/{first.json()['id']}")
    assert forgotten.json() == {"deleted": 1}
    assert (await http.delete(f"{facts_path('1')}/{first.json()['id']}")).status_code == 404
    cleared = await http.delete(facts_path("1"), params={"chat_id": "g1", "chat_kind": "group"})
    assert cleared.json() == {"deleted": 1}
    assert await listed(http, "1") == ["I live in Lisbon."]
    assert (await http.delete(facts_path("1"), params={"chat_id": "dm"})).json() == {"deleted": 1}
    assert await listed(http, "1") == []


async def test_a_blank_fact_or_one_for_someone_else_is_refused_and_the_list_is_bounded(http):
    blank = {"platform": "telegram", "user_id": "1", "chat_id": "dm", "text": "   "}
    assert (await http.post(facts_path("1"), json=blank)).status_code == 422
    body = FactPin(platform="telegram", user_id="2", chat_id="dm", text="I am someone else.")
    assert (await http.post(facts_path("1"), json=body.model_dump(mode="json"))).status_code == 400
    for i in range(16):
        assert (await pin(http, "1", f"Fact number {i}.")).status_code == 201
    full = await pin(http, "1", "One fact too many.")
    assert full.status_code == 409 and "forget one" in full.json()["error"]["message"]
    assert (await pin(http, "1", "fact number 3")).json()["text"] == "Fact number 3."  # known: not added twice


async def test_export_lists_facts_and_earlier_turns_and_forget_deletes_them(client, http, brain):
    user = UserRef(platform="telegram", user_id="7")
    await pin(http, "7", "I keep bees CANARY-FACT.")
    for i in range(5):  # the test brain keeps 6 turns: the first ones leave the window
        await client.chat(ChatRequest(**user.model_dump(), chat_id="dm", text=f"CANARY-TURN {i}"))
    export = await client.export(user)
    assert [f.text for f in export.facts] == ["I keep bees CANARY-FACT."]
    assert [t.text for t in export.earlier_turns if t.role == "user"][:2] == ["CANARY-TURN 0", "CANARY-TURN 1"]
    assert {t.chat_id for t in export.earlier_turns} == {"dm"}

    await client.forget(user)
    await settle(brain)
    store = Store(connect(brain.redis.url))
    text = await all_text(store)
    await store.close()
    assert "CANARY-FACT" not in text and "CANARY-TURN" not in text
    export = await client.export(user)
    assert export.facts == [] and export.earlier_turns == []


async def test_pinned_facts_never_enter_the_training_log(client, http):
    user = UserRef(platform="telegram", user_id="8")
    await pin(http, "8", "My password hint is CANARY-HINT.")
    await client.chat(ChatRequest(**user.model_dump(), chat_id="dm", text="hello"))
    await client.opt_in(user)
    await client.chat(ChatRequest(**user.model_dump(), chat_id="dm", text="hello again"))
    log = (await client.export(user)).log
    assert [e.user_text for e in log] == ["hello again"]
    assert all("CANARY-HINT" not in e.user_text + e.reply for e in log)


# what each member tells the bot, where; every string is a canary that must reach only the prompts allowed
TOLD = {
    ("ann", "dm-ann", "direct"): "ANN-PRIVATE",
    ("ann", "group", "group"): "ANN-GROUP",
    ("bob", "dm-bob", "direct"): "BOB-PRIVATE",
    ("bob", "group", "group"): "BOB-GROUP",
}
FILLER = ["How do rainbows form?", "Tell me about volcanoes.", "Why is the sky blue?", "How do planes fly?"]


class SeenPrompts:
    """The brain's own backend, noting the text of every prompt it generates from (replies, summaries)."""

    def __init__(self, backend: Any, tokenizer: Any):
        self.backend, self.tokenizer, self.texts = backend, tokenizer, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def generate(self, prompt_ids: list[int], sampling: Any, **kw: Any) -> AsyncIterator[Any]:
        self.texts.append(self.tokenizer.decode(prompt_ids))
        return self.backend.generate(prompt_ids, sampling, **kw)


async def settle(brain) -> None:
    await eventually(lambda: not brain.runtime.memory.background, "the background work finished", timeout=120)


async def ask(client, brain, seen: SeenPrompts, who: str, chat: str, kind: str, text: str) -> str:
    """Everything the model was given because of this message (its reply, and any background work)."""
    await settle(brain)
    start = len(seen.texts)
    request = ChatRequest(platform="telegram", user_id=who, chat_id=chat, chat_kind=kind, text=text)
    await client.chat(request)
    await settle(brain)
    return "\n".join(seen.texts[start:])


async def test_in_a_group_a_prompt_holds_only_the_speakers_own_memory_of_that_group(client, http, brain):
    seen = SeenPrompts(brain.runtime.backend, brain.runtime.tokenizer)
    brain.runtime.backend = seen
    for (who, chat, kind), canary in TOLD.items():
        await pin(http, who, f"My code word is {canary}-FACT.", chat, ChatKind(kind))
        await ask(client, brain, seen, who, chat, kind, f"Remember that my code word is {canary}-SAID.")
        for text in FILLER:  # the statement leaves the window (6 turns): only recall can bring it back
            await ask(client, brain, seen, who, chat, kind, text)

    question = "What is my code word?"
    ann_in_group = await ask(client, brain, seen, "ann", "group", "group", question)
    assert "ANN-GROUP-FACT" in ann_in_group and "ANN-GROUP-SAID" in ann_in_group
    assert "BOB" not in ann_in_group and "ANN-PRIVATE" not in ann_in_group
    bob_in_group = await ask(client, brain, seen, "bob", "group", "group", question)
    assert "BOB-GROUP-FACT" in bob_in_group and "BOB-GROUP-SAID" in bob_in_group
    assert "ANN" not in bob_in_group and "BOB-PRIVATE" not in bob_in_group
    # in private a member's memory is all their own: from their direct chat and from the group
    ann_in_private = await ask(client, brain, seen, "ann", "dm-ann", "direct", question)
    assert all(canary in ann_in_private for canary in ("ANN-PRIVATE-FACT", "ANN-PRIVATE-SAID", "ANN-GROUP-FACT"))
    assert "BOB" not in ann_in_private

    # an operator may let groups use what members said in private: still never another member's
    brain.runtime.settings.memory.share_direct_in_groups = True
    shared = await ask(client, brain, seen, "ann", "group", "group", question)
    assert "ANN-PRIVATE-FACT" in shared and "ANN-GROUP-FACT" in shared and "BOB" not in shared
