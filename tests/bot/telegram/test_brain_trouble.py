from __future__ import annotations

import asyncio

from bot.client import BrainUnavailable
from bot.commands import friendly_error
from tests.bot.telegram.brain_double import BrainDouble
from tests.support.telegram_api import TelegramApiServer

UNAVAILABLE = friendly_error(BrainUnavailable(0, "unreachable", ""))


async def test_with_the_brain_down_the_user_gets_a_friendly_message_and_answers_resume_when_it_is_back(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    await double.stop()

    telegram.send_text(ana, chat, "are you there?")
    assert (await telegram.wait_for_reply(chat)).text == UNAVAILABLE
    telegram.send_text(ana, chat, "/memory")
    assert (await telegram.wait_for_reply(chat, after=1)).text == UNAVAILABLE

    await double.start()
    telegram.send_text(ana, chat, "and now?")
    await telegram.wait_for_text(chat, "You said: and now?")
    assert [r.text for r in double.requests] == ["and now?"]


async def test_a_brain_that_is_not_ready_yet_is_asked_again_and_the_user_gets_the_answer(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    double.refusals = [(503, "not_ready", "The model is still loading.", None)]

    telegram.send_text(ana, chat, "good morning")

    await telegram.wait_for_text(chat, "You said: good morning")
    assert telegram.transcript(chat) == ["You said: good morning"]
    assert [r.text for r in double.requests] == ["good morning", "good morning"]


async def test_a_brain_too_slow_to_answer_gets_a_friendly_message(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot(client_timeout=0.5)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    never = asyncio.Event()

    async def stall(request, index: int, sent: str) -> None:
        await never.wait()

    double.before_delta = stall

    telegram.send_text(ana, chat, "take your time")

    assert (await telegram.wait_for_reply(chat)).text == UNAVAILABLE
    never.set()


async def test_a_reply_cut_off_midway_keeps_what_was_shown_and_says_what_happened(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    double.reply_for = lambda request: "a long answer that the brain never finishes"

    async def die_midway(request, index: int, sent: str) -> None:
        if index == 2:
            await telegram.wait_for(lambda: telegram.transcript(chat) == [sent])
            raise ConnectionResetError("the brain went away")

    double.before_delta = die_midway

    telegram.send_text(ana, chat, "go on")

    await telegram.wait_for(lambda: len(telegram.bot_messages(chat)) == 2)
    partial, note = telegram.transcript(chat)
    assert partial == "a long answer that …"
    assert note == UNAVAILABLE
    assert [r.text for r in double.requests] == ["go on"]  # a reply that had begun is not asked twice


async def test_the_brains_rate_limit_is_explained_with_the_wait(
    telegram: TelegramApiServer, double: BrainDouble, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    double.refusals = [(429, "rate_limited", "Too many messages.", 5)]

    telegram.send_text(ana, chat, "spam")

    assert (await telegram.wait_for_reply(chat)).text == (
        "You're sending messages faster than I can answer. Try again in 5 s."
    )
    assert len(double.requests) == 1  # a refusal is not retried against the limit
