"""The chat API end to end: a real brain (tiny model) over a real redis-server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from bot.client import BrainClient
from brain.api_models import ChatKind, ChatReply, ChatRequest, PersonaSet, UserRef

GREEDY = {"temperature": 0}


def req(text: str, user: str = "1", chat: str = "c1", sampling: dict | None = None, **kw) -> ChatRequest:
    return ChatRequest(
        platform="telegram", user_id=user, chat_id=chat, text=text, sampling={**GREEDY, **(sampling or {})}, **kw
    )


@pytest.fixture
async def client(brain):
    c = BrainClient(brain.url, brain.api_key, retries=0)
    yield c
    await c.aclose()


async def test_a_reply_is_stored_in_memory(client):
    reply = await client.chat(req("hello there", display_name="Ann"))
    assert reply.reply and reply.tokens > 0 and reply.persona == "assistant"
    assert reply.logged is False
    memory = await client.memory(UserRef(platform="telegram", user_id="1"), "c1")
    assert [t.role for t in memory.turns] == ["user", "assistant"]
    assert memory.turns[0].text == "hello there" and memory.turns[1].text == reply.reply


async def test_streamed_reply_arrives_in_pieces_that_add_up(client):
    pieces, final = [], None
    async for item in client.chat_stream(req("tell me a story")):
        if isinstance(item, ChatReply):
            final = item
        else:
            pieces.append(item)
    assert final is not None and len(pieces) > 1
    assert "".join(pieces).strip() == final.reply


async def test_opted_in_turns_are_logged_with_the_consent_version(client, brain):
    user = UserRef(platform="telegram", user_id="5")
    await client.chat(req("not logged", user="5"))
    state = await client.opt_in(user)
    assert state.opted_in and state.version == brain.settings.brain.consent_version and state.at is not None
    reply = await client.chat(req("logged please", user="5"))
    assert reply.logged
    export = await client.export(user)
    assert [e.user_text for e in export.log] == ["logged please"]
    assert export.log[0].consent_version == brain.settings.brain.consent_version
    await client.opt_out(user)
    assert not (await client.chat(req("after opt-out", user="5"))).logged
    assert len((await client.export(user)).log) == 1


async def test_old_turns_fold_into_a_summary_every_few_turns_in_the_background(client, brain):
    from brain.memory.summary import faithful
    from tests.brain.service.test_memory_api import SeenPrompts, settle

    user = UserRef(platform="telegram", user_id="1")
    runtime = brain.runtime
    seen = SeenPrompts(runtime.backend, runtime.tokenizer)
    runtime.backend = seen
    assert runtime.settings.memory.fold_every_turns == 8  # the tiny test model gets a capable model's profile
    for i in range(5):  # the brain keeps 6 turns: 4 have left the window, too few to fold
        await client.chat(req(f"message {i}"))
        await settle(brain)
    assert not [text for text in seen.texts if "Update the summary" in text], "a fold ran before 8 turns left"
    for i in range(5, 7):  # 8 turns have left it now: one fold, of all of them
        await client.chat(req(f"message {i}"))
        await settle(brain)
    folds = [text for text in seen.texts if "Update the summary" in text]
    assert len(folds) == 1 and all(f"user: message {i}" in folds[0] for i in range(4))
    memory = await client.memory(user, "c1")
    assert len(memory.turns) <= 6 and memory.summaries is True
    assert "message 0" not in [t.text for t in memory.turns]
    # the tiny model's summary is noise: kept only if each of its content words was said
    folded = [text.split("New lines:")[1] for text in folds]
    assert faithful(memory.summary, folded), memory.summary


async def test_without_summaries_memory_shows_no_summary_and_none_is_written(tmp_path, tiny_model_dir):
    from brain.store import Store
    from brain.store.client import connect
    from tests.support.brain_server import running_brain

    stale = "User: I'd love to go to Lisbon!"
    with running_brain(tmp_path, tiny_model_dir, memory={"summaries": False}) as brain:
        client, store = BrainClient(brain.url, brain.api_key, retries=0), Store(connect(brain.redis.url))
        try:
            await client.chat(req("hello"))
            # a summary left from when summaries were on is not shown
            await store.chats.fold_summary("telegram:1", "c1", stale, 3600)
            for i in range(5):  # the brain keeps 6 turns: older ones fall out
                await client.chat(req(f"message {i}"))
            memory = await client.memory(UserRef(platform="telegram", user_id="1"), "c1")
            assert memory.summary == "" and memory.summaries is False
            assert "message 0" not in [t.text for t in memory.turns]
            assert (await store.chats.memory("telegram:1", "c1"))[0] == stale, "no summary was folded"
        finally:
            await client.aclose()
            await store.close()


async def test_personas_presets_custom_group_and_card(client):
    presets = await client.personas()
    assert len(presets) >= 5 and {"assistant", "tutor", "coder"} <= {p.name for p in presets}
    me = dict(platform="telegram", user_id="1", chat_id="c1")
    state = await client.set_persona(PersonaSet(**me, preset="pirate"))
    assert state.name == "pirate" and state.scope.value == "user"
    assert (await client.chat(req("ahoy"))).persona == "pirate"

    group = dict(platform="telegram", user_id="1", chat_id="g1", chat_kind=ChatKind.group)
    await client.set_persona(PersonaSet(**group, custom="You are a terse librarian."))
    other = await client.get_persona(UserRef(platform="telegram", user_id="2"), "g1", "group")
    assert other.custom and other.system_prompt == "You are a terse librarian." and other.scope.value == "chat"
    assert (await client.get_persona(UserRef(platform="telegram", user_id="1"), "c1", "direct")).name == "pirate"

    card = {"spec": "chara_card_v2", "spec_version": "2.0",
            "data": {"name": "Captain Nemo", "description": "{{char}} commands the Nautilus.",
                     "personality": "brooding", "scenario": "", "first_mes": "Welcome aboard, {{user}}."}}  # fmt: skip
    state = await client.set_persona(PersonaSet(**me, card=card))
    assert state.name == "captain-nemo" and "Captain Nemo commands the Nautilus." in state.system_prompt
    assert state.greeting == "Welcome aboard, the user."


async def test_forget_removes_every_key_of_the_user(client, brain):
    user = UserRef(platform="telegram", user_id="31337")
    await client.opt_in(user)
    await client.chat(req("remember CANARY-FORGET", user="31337"))
    await client.set_persona(PersonaSet(platform="telegram", user_id="31337", chat_id="c1", preset="coach"))
    result = await client.forget(user)
    assert result.forgotten and result.deleted_keys >= 3
    import redis

    r = redis.Redis.from_url(brain.redis.url, decode_responses=True)
    for key in r.scan_iter("*"):
        assert "31337" not in key
        if r.type(key) == "stream":
            assert "CANARY-FORGET" not in json.dumps(r.xrange(key))
    export = await client.export(user)
    assert export.log == [] and export.chats == {} and export.profile == {}


async def test_sixteen_concurrent_streams_all_complete(client):
    async def one(i: int) -> str:
        text = ""
        async for item in client.chat_stream(req(f"question {i}", user=f"u{i}")):
            if isinstance(item, ChatReply):
                return item.reply
            text += item
        raise AssertionError("stream ended without a final reply")

    replies = await asyncio.gather(*(one(i) for i in range(16)))
    assert len(replies) == 16 and all(isinstance(r, str) for r in replies)


async def test_batched_replies_equal_unbatched_greedy_replies(client):
    prompts = [f"prompt number {i} " + "x" * i for i in range(8)]
    alone = [(await client.chat(req(p, user=f"a{i}"))).reply for i, p in enumerate(prompts)]
    together = await asyncio.gather(*(client.chat(req(p, user=f"b{i}")) for i, p in enumerate(prompts)))
    assert [r.reply for r in together] == alone


async def test_metrics_and_health(brain, client):
    async with httpx.AsyncClient(base_url=brain.url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).json()["status"] == "ready"
        assert (await http.get("/metrics")).status_code == 401

        async def figures() -> dict[str, float]:
            text = (await http.get("/metrics", headers=brain.headers())).text
            names = ("ownchat_tokens_generated_total", 'ownchat_request_seconds_count{route="chat"}',
                     'ownchat_replies_total{outcome="ok"}', "ownchat_batch_size_count")  # fmt: skip
            values = {name: 0.0 for name in names}
            for line in text.splitlines():
                for name in names:
                    if line.startswith(name + " "):
                        values[name] = float(line.rsplit(" ", 1)[1])
            return values

        before = await figures()
        reply = await client.chat(req("hi"))
        after = await figures()
    assert after["ownchat_tokens_generated_total"] - before["ownchat_tokens_generated_total"] >= reply.tokens > 0
    assert (
        after['ownchat_request_seconds_count{route="chat"}']
        == before['ownchat_request_seconds_count{route="chat"}'] + 1
    )
    assert after['ownchat_replies_total{outcome="ok"}'] == before['ownchat_replies_total{outcome="ok"}'] + 1
    assert after["ownchat_batch_size_count"] > before["ownchat_batch_size_count"]


async def test_beam_search_for_non_streaming_requests(client):
    """Beam search is deterministic, and it is not greedy decoding under another name: on some prompts the best
    of three beams is another reply than greedy's."""
    prompts = [f"tell me about {thing}" for thing in ("cats", "dogs", "rain", "ships", "bread", "stars")]
    beams, greedy = [], []
    for i, prompt in enumerate(prompts):
        beam = await client.chat(req(prompt, user=f"beam{i}", sampling={"num_beams": 3, "max_new_tokens": 8}))
        again = await client.chat(req(prompt, user=f"again{i}", sampling={"num_beams": 3, "max_new_tokens": 8}))
        plain = await client.chat(req(prompt, user=f"greedy{i}", sampling={"max_new_tokens": 8}))
        assert beam.reply and beam.reply == again.reply
        beams.append(beam.reply)
        greedy.append(plain.reply)
    assert beams != greedy
