from __future__ import annotations

import asyncio
import contextlib

from tests.bot.telegram.brain_double import BrainDouble
from tests.support.telegram_api import TelegramApiServer


async def test_a_direct_message_is_answered_with_the_brains_reply(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana = telegram.user("Ana", "ana")
    chat = telegram.private_chat(ana)

    telegram.send_text(ana, chat, "hello there, how are you today?")

    reply = await telegram.wait_for_text(chat, "You said: hello there, how are you today?")
    assert reply.reply_to is None  # a direct chat needs no quoting
    request = double.requests[0]
    assert (request.platform, request.user_id, request.chat_id, request.chat_kind.value) == (
        "telegram",
        str(ana.id),
        str(chat.id),
        "direct",
    )
    assert request.display_name == "Ana"


async def test_typing_shows_while_the_model_works(telegram: TelegramApiServer, double: BrainDouble, start_bot):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)

    telegram.send_text(ana, chat, "think hard")
    await telegram.wait_for_text(chat, "You said: think hard")

    methods = [c.method for c in telegram.calls if c.params.get("chat_id") == chat.id]
    assert methods.index("sendChatAction") < methods.index("sendMessage")
    assert telegram.calls_to("sendChatAction")[0].params["action"] == "typing"


async def test_a_second_message_sent_while_the_first_reply_streams_is_answered_after_it(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    double.reply_for = lambda request: f"{request.text} answered in full, word after word"
    first_shown, second_asked, release_first = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold_the_first_reply(request, index: int, sent: str) -> None:
        if request.text == "second":
            second_asked.set()
        elif index == 1:
            first_shown.set()
            await release_first.wait()

    double.before_delta = hold_the_first_reply
    telegram.send_text(ana, chat, "first")
    await first_shown.wait()
    second = telegram.send_text(ana, chat, "second")
    await telegram.wait_fetched(second)
    # proving that something does not happen takes a bounded wait: the second question must not
    # reach the brain while the first reply is still streaming
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(second_asked.wait(), 0.3)
    assert not second_asked.is_set()
    release_first.set()

    await telegram.wait_for(lambda: telegram.transcript(chat)[1:] == ["second answered in full, word after word"])
    assert telegram.transcript(chat) == [
        "first answered in full, word after word",
        "second answered in full, word after word",
    ]
    assert double.events == [("start", "first"), ("end", "first"), ("start", "second"), ("end", "second")]


async def test_other_people_are_not_kept_waiting_by_someone_elses_reply(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana, bob = telegram.user("Ana"), telegram.user("Bob")
    ana_chat, bob_chat = telegram.private_chat(ana), telegram.private_chat(bob)
    ana_started, release_ana = asyncio.Event(), asyncio.Event()

    async def hold_anas_reply(request, index: int, sent: str) -> None:
        if request.user_id == str(ana.id) and index == 1:
            ana_started.set()
            await release_ana.wait()

    double.before_delta = hold_anas_reply
    telegram.send_text(ana, ana_chat, "ana speaks at length")
    await ana_started.wait()
    telegram.send_text(bob, bob_chat, "bob")

    await telegram.wait_for_text(bob_chat, "You said: bob")
    release_ana.set()
    await telegram.wait_for(lambda: telegram.transcript(ana_chat) == ["You said: ana speaks at length"])
