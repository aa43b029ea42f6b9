"""A member's message that waits for their earlier one to be answered shows that it is queued."""

from __future__ import annotations

from bot.telegram.ordering import QUEUED
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain
from tests.support.telegram_api import TelegramApiServer


async def test_a_message_queued_behind_an_outage_shows_it_waits_and_is_answered_in_turn(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(retry_window_s=60)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    await fake_brain.stop()

    telegram.send_text(ana, chat, "are you there?")
    telegram.send_text(ana, chat, "hello?")

    await eventually(
        lambda: [(m.text, emoji) for m, emoji in telegram.bot_reactions] == [("hello?", [QUEUED])], "👀 on the second"
    )
    await fake_brain.start()
    await telegram.wait_for_text(chat, "You said: hello?")
    assert [(m.text, emoji) for m, emoji in telegram.bot_reactions][-1] == ("hello?", [])  # its turn came
    assert [r.text for r in fake_brain.requests] == ["are you there?", "hello?"]
