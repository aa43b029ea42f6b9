from __future__ import annotations

from bot.answering import NOT_ANSWERED, STILL_THINKING
from bot.client import BrainUnavailable
from bot.commands import friendly_error
from tests.support.eventually import eventually
from tests.support.fake_brain import CutAfter, FakeBrain, Refuse, Silent
from tests.support.telegram_api import TelegramApiServer

UNAVAILABLE = friendly_error(BrainUnavailable(0, "unreachable", ""))


async def test_with_the_brain_down_the_user_gets_a_friendly_message_and_answers_resume_when_it_is_back(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    await fake_brain.stop()

    telegram.send_text(ana, chat, "are you there?")
    assert (await telegram.wait_for_reply(chat)).text == UNAVAILABLE
    telegram.send_text(ana, chat, "/memory")
    assert (await telegram.wait_for_reply(chat, after=1)).text == UNAVAILABLE

    await fake_brain.start()
    telegram.send_text(ana, chat, "and now?")
    await telegram.wait_for_text(chat, "You said: and now?")
    assert [r.text for r in fake_brain.requests] == ["and now?"]


async def test_a_brain_that_is_not_ready_yet_is_asked_again_and_the_user_gets_the_answer(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.fail_next("chat", Refuse(503, "not_ready", "The model is still loading."))

    telegram.send_text(ana, chat, "good morning")

    await telegram.wait_for_text(chat, "You said: good morning")
    assert telegram.transcript(chat) == ["You said: good morning"]
    assert fake_brain.events == ["refused good morning", "start good morning", "end good morning"]


async def test_a_brain_too_slow_to_answer_gets_a_friendly_message(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(client_timeout=0.5)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.fail_next("chat", Silent())

    telegram.send_text(ana, chat, "take your time")

    assert (await telegram.wait_for_reply(chat)).text == UNAVAILABLE
    assert len(fake_brain.requests) == 1  # a request the brain may be working on is not sent twice


async def test_a_reply_cut_off_midway_keeps_what_was_shown_and_says_what_happened(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.reply_for = lambda request: "a long answer that the brain never finishes"
    fake_brain.fail_next("chat", CutAfter(2))

    async def let_the_user_see_it_first(request, index: int, sent: str) -> None:
        if index == 2:
            await eventually(lambda: telegram.transcript(chat) == [sent], "the first words on screen")

    fake_brain.before_delta = let_the_user_see_it_first

    telegram.send_text(ana, chat, "go on")

    await eventually(lambda: len(telegram.bot_messages(chat)) == 2, "the partial reply and a notice")
    assert telegram.transcript(chat) == ["a long answer that …", UNAVAILABLE]
    assert [r.text for r in fake_brain.requests] == ["go on"]  # a reply that had begun is not asked twice


async def test_the_brains_rate_limit_is_explained_with_the_wait(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.fail_next("chat", Refuse(429, "rate_limited", "Too many messages.", retry_after=5))

    telegram.send_text(ana, chat, "spam")

    assert (await telegram.wait_for_reply(chat)).text == (
        "You're sending messages faster than I can answer. Try again in 5 s."
    )
    assert len(fake_brain.requests) == 1  # a refusal is not retried against the limit


async def test_a_message_sent_while_the_brain_is_down_is_answered_once_it_is_back(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(retry_window_s=60)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    await fake_brain.stop()

    telegram.send_text(ana, chat, "are you there?")
    notice = await telegram.wait_for_reply(chat)
    assert notice.text == STILL_THINKING
    await fake_brain.start()

    await telegram.wait_for_text(chat, "You said: are you there?")
    # one message: the notice became the answer
    assert telegram.bot_messages(chat) == [notice]
    assert notice.versions[0] == STILL_THINKING and notice.versions[-1] == "You said: are you there?"
    assert [r.text for r in fake_brain.requests] == ["are you there?"]


async def test_a_message_the_brain_refused_while_busy_is_asked_again_and_stored_once(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(retry_window_s=60)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.fail_next("chat", Refuse(503, "not_ready", "The model is still loading."), times=8)

    telegram.send_text(ana, chat, "good morning")

    await telegram.wait_for_text(chat, "You said: good morning")
    assert telegram.transcript(chat) == ["You said: good morning"]
    assert telegram.bot_messages(chat)[0].versions[0] == STILL_THINKING
    assert fake_brain.events[-2:] == ["start good morning", "end good morning"]
    # every try carried the message's idempotency key, and the brain stored the turn once
    assert len({r.request_id for r in fake_brain.requests}) == 1 and fake_brain.requests[0].request_id
    assert [t.text for turns in fake_brain.turns.values() for t in turns] == ["good morning", "You said: good morning"]


async def test_past_the_window_the_member_is_told_plainly_that_the_message_was_not_answered(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(retry_window_s=0.3)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    await fake_brain.stop()

    telegram.send_text(ana, chat, "hello?")

    await telegram.wait_for_text(chat, NOT_ANSWERED)
    [message] = telegram.bot_messages(chat)
    assert message.versions == [STILL_THINKING, NOT_ANSWERED]
    await fake_brain.start()
    telegram.send_text(ana, chat, "and now?")
    await telegram.wait_for_text(chat, "You said: and now?")
    assert [r.text for r in fake_brain.requests] == ["and now?"]  # the unanswered one is not sent later
