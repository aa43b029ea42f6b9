"""The Telegram bot against a real brain (tiny model, real redis-server): what the user is told is true."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.client import BrainClient
from brain.api_models import MemoryView, UserRef
from tests.support.brain_server import BrainHandle, running_brain
from tests.support.eventually import eventually
from tests.support.telegram_api import TelegramApiServer, TgChat, TgMessage, TgUser


@pytest.fixture
def brain(tmp_path: Path, tiny_model_dir: Path) -> Iterator[BrainHandle]:
    """A real brain whose two personas answer briefly, so that the tiny model keeps the test quick."""
    personas = tmp_path / "personas"
    personas.mkdir()
    for name, prompt in (("assistant", "You are a helpful assistant."), ("pirate", "You are a cheerful pirate.")):
        persona = {
            "name": name,
            "description": f"A brief {name}",
            "system_prompt": prompt,
            "greeting": "Arr!" if name == "pirate" else "",
            "sampling": {"temperature": 0.7, "max_new_tokens": 12},
        }
        (personas / f"{name}.yaml").write_text(yaml.safe_dump(persona))
    with running_brain(tmp_path, tiny_model_dir, brain={"personas_dir": str(personas)}) as handle:
        yield handle


async def says(telegram: TelegramApiServer, user: TgUser, chat: TgChat, text: str) -> TgMessage:
    seen = len(telegram.bot_messages(chat))
    telegram.send_text(user, chat, text)
    return await telegram.wait_for_reply(chat, after=seen, what=f"the answer to {text!r}")


async def presses(telegram: TelegramApiServer, user: TgUser, chat: TgChat, message: TgMessage, label: str):
    seen = len(telegram.bot_messages(chat))
    telegram.press(user, message, label)
    return await telegram.wait_for_reply(chat, after=seen, what=f"the answer to pressing {label!r}")


async def chats(telegram: TelegramApiServer, brain_api: BrainClient, user: TgUser, chat: TgChat, text: str) -> str:
    """Send a message and return the reply the brain remembers, once the user sees exactly that."""
    me = UserRef(platform="telegram", user_id=str(user.id))
    seen = len(telegram.bot_messages(chat))
    telegram.send_text(user, chat, text)
    asked = text.replace("@ownchat_test_bot", "").strip()
    memory = await remembered(brain_api, me, chat, asked)
    reply = memory.turns[-1].text.strip() or "…"
    await eventually(lambda: " ".join(telegram.transcript(chat)[seen:]) == reply, f"the whole reply {reply!r} shown")
    return reply


async def remembered(brain_api: BrainClient, user: UserRef, chat: TgChat, asked: str) -> MemoryView:
    """The brain's memory of the chat once it ends with `asked` and the reply (stored as the reply completes)."""
    kind = "direct" if chat.type == "private" else "group"

    async def answered() -> MemoryView | None:
        memory = await brain_api.memory(user, str(chat.id), kind)
        turns = memory.turns
        return memory if len(turns) >= 2 and turns[-2].text == asked and turns[-1].role == "assistant" else None

    return await eventually(answered, f"the brain remembering {asked!r} answered")


async def test_a_user_opts_in_chats_sets_a_persona_and_is_forgotten(
    telegram: TelegramApiServer, brain, brain_api: BrainClient, start_bot
):
    await start_bot(brain_url=brain.url, api_key=brain.api_key)
    ana = telegram.user("Ana", "ana")
    chat = telegram.private_chat(ana)
    me = UserRef(platform="telegram", user_id=str(ana.id))

    # /optin says what is kept before it records anything
    notice = await says(telegram, ana, chat, "/optin")
    assert (await brain_api.privacy()).text in notice.text
    assert not (await brain_api.consent(me)).opted_in
    told = (await presses(telegram, ana, chat, notice, "Yes, opt me in")).text
    consent = await brain_api.consent(me)
    assert consent.opted_in
    assert f"you are opted in (consent version {consent.version}" in told

    # a chat turn: what Ana reads is what the brain remembers and logs
    await chats(telegram, brain_api, ana, chat, "What is the capital of France?")
    export = await brain_api.export(me)
    assert [(e.user_text, e.chat_id) for e in export.log] == [("What is the capital of France?", str(chat.id))]

    # /persona offers the brain's presets; pressing one makes it so
    menu = await says(telegram, ana, chat, "/persona")
    presets = [p.name for p in await brain_api.personas()]
    assert [label for label, _ in menu.buttons] == presets
    picked = await presses(telegram, ana, chat, menu, "pirate")
    assert picked.text.startswith("Persona set for you: pirate.")
    assert (await brain_api.get_persona(me, str(chat.id), "direct")).name == "pirate"
    await chats(telegram, brain_api, ana, chat, "Where is the treasure?")
    assert [e.persona for e in (await brain_api.export(me)).log][-1] == "pirate"

    recall = (await says(telegram, ana, chat, "/memory")).text
    memory = await brain_api.memory(me, str(chat.id), "direct")
    assert "Persona: pirate" in recall
    assert "Learning from our chats: yes" in recall
    assert f"Recent turns remembered here: {len(memory.turns)}" in recall
    assert len(memory.turns) == 4

    # /forget asks first, then deletes everything the brain keeps about Ana
    question = await says(telegram, ana, chat, "/forget")
    assert (await brain_api.export(me)).log, "nothing is deleted before Ana confirms"
    done = (await presses(telegram, ana, chat, question, "Yes, forget me")).text
    deleted = int(re.search(r"\((\d+) records deleted\)", done).group(1))
    assert deleted > 0
    export = await brain_api.export(me)
    assert (export.profile, export.chats, export.log) == ({}, {}, [])
    assert not (await brain_api.consent(me)).opted_in
    assert (await brain_api.get_persona(me, str(chat.id), "direct")).name != "pirate"


async def test_in_a_group_the_persona_belongs_to_the_chat_and_only_admins_set_it(
    telegram: TelegramApiServer, brain, brain_api: BrainClient, start_bot
):
    await start_bot(brain_url=brain.url, api_key=brain.api_key)
    ana, bob = telegram.user("Ana", "ana"), telegram.user("Bob", "bob")
    group = telegram.group("Book club", owner=ana)
    bob_ref = UserRef(platform="telegram", user_id=str(bob.id))

    refused = await says(telegram, bob, group, "/persona pirate")
    assert refused.text == "Only this chat's admins can change my persona here."
    assert (await brain_api.get_persona(bob_ref, str(group.id), "group")).name != "pirate"

    assert (await says(telegram, ana, group, "/persona pirate")).text.startswith("Persona set in this chat: pirate.")
    assert (await brain_api.get_persona(bob_ref, str(group.id), "group")).name == "pirate"

    # Bob's mention is answered, remembered under his own id in this group, not logged (he never opted in)
    await chats(telegram, brain_api, bob, group, "@ownchat_test_bot what are we reading?")
    assert (await brain_api.export(bob_ref)).log == []
