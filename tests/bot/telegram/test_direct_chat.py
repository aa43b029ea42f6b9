from __future__ import annotations

import asyncio

from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain
from tests.support.telegram_api import TelegramApiServer


async def test_a_direct_message_is_answered_with_the_brains_reply(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana", "ana")
    chat = telegram.private_chat(ana)

    telegram.send_text(ana, chat, "hello there, how are you today?")

    reply = await telegram.wait_for_text(chat, "You said: hello there, how are you today?")
    assert reply.reply_to is None  # a direct chat needs no quoting
    request = fake_brain.requests[0]
    assert (request.platform, request.user_id, request.chat_id, request.chat_kind.value) == (
        "telegram",
        str(ana.id),
        str(chat.id),
        "direct",
    )
    assert request.display_name == "Ana"


async def test_typing_shows_while_the_model_works(telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)

    telegram.send_text(ana, chat, "think hard")
    await telegram.wait_for_text(chat, "You said: think hard")

    methods = [c.method for c in telegram.calls if c.params.get("chat_id") == chat.id]
    assert methods.index("sendChatAction") < methods.index("sendMessage")
    assert telegram.calls_to("sendChatAction")[0].params["action"] == "typing"


async def test_a_second_message_sent_while_the_first_reply_streams_is_answered_after_it(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana, bob = telegram.user("Ana"), telegram.user("Bob")
    chat, bob_chat = telegram.private_chat(ana), telegram.private_chat(bob)
    fake_brain.reply_for = lambda request: f"{request.text} answered in full, word after word"
    first_shown, release_first = asyncio.Event(), asyncio.Event()

    async def hold_the_first_reply(request, index: int, sent: str) -> None:
        if request.text == "first" and index == 1:
            first_shown.set()
            await release_first.wait()

    fake_brain.before_delta = hold_the_first_reply
    telegram.send_text(ana, chat, "first")
    await first_shown.wait()
    telegram.send_text(ana, chat, "second")
    # Bob's message comes after Ana's second; once he is answered, hers has gone as far as it may
    telegram.send_text(bob, bob_chat, "bob")
    await telegram.wait_for_text(bob_chat, "bob answered in full, word after word")
    assert "start second" not in fake_brain.events
    release_first.set()

    await telegram.wait_for_text(chat, "second answered in full, word after word")
    assert telegram.transcript(chat) == [
        "first answered in full, word after word",
        "second answered in full, word after word",
    ]
    assert [e for e in fake_brain.events if "bob" not in e] == [
        "start first",
        "end first",
        "start second",
        "end second",
    ]


async def test_other_people_are_not_kept_waiting_by_someone_elses_reply(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana, bob = telegram.user("Ana"), telegram.user("Bob")
    ana_chat, bob_chat = telegram.private_chat(ana), telegram.private_chat(bob)
    ana_started, release_ana = asyncio.Event(), asyncio.Event()

    async def hold_anas_reply(request, index: int, sent: str) -> None:
        if request.user_id == str(ana.id) and index == 1:
            await eventually(lambda: telegram.transcript(ana_chat) == [sent], "Ana's first words on screen")
            ana_started.set()
            await release_ana.wait()

    fake_brain.before_delta = hold_anas_reply
    telegram.send_text(ana, ana_chat, "ana speaks at length")
    await ana_started.wait()
    telegram.send_text(bob, bob_chat, "bob")

    await telegram.wait_for_text(bob_chat, "You said: bob")
    assert telegram.transcript(ana_chat) == ["You said:"]  # Ana's reply is still held
    release_ana.set()
    await telegram.wait_for_text(ana_chat, "You said: ana speaks at length")


async def test_a_members_turns_in_another_chat_are_not_kept_waiting(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    direct, group = telegram.private_chat(ana), telegram.group("Book club", owner=ana)
    direct_started, release_direct = asyncio.Event(), asyncio.Event()

    async def hold_the_direct_reply(request, index: int, sent: str) -> None:
        if request.chat_id == str(direct.id) and index == 1:
            await eventually(lambda: telegram.transcript(direct) == [sent], "the first words on screen")
            direct_started.set()
            await release_direct.wait()

    fake_brain.before_delta = hold_the_direct_reply
    telegram.send_text(ana, direct, "a long question")
    await direct_started.wait()
    telegram.send_text(ana, group, "@ownchat_test_bot a quick one")

    await telegram.wait_for_text(group, "You said: a quick one")
    assert telegram.transcript(direct) == ["You said:"]
    release_direct.set()
    await telegram.wait_for_text(direct, "You said: a long question")
