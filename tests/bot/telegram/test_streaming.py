from __future__ import annotations

import pytest

from bot.splitting import utf16_len
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, by_words
from tests.support.telegram_api import TelegramApiServer


def ana_alone(telegram: TelegramApiServer):
    ana = telegram.user("Ana")
    return ana, telegram.private_chat(ana)


@pytest.mark.parametrize("edit_interval_s", [0.0, 0.2])
async def test_a_reply_streams_into_one_message_and_a_429_delays_it_without_losing_text(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot, edit_interval_s: float
):
    await start_bot(edit_interval_s=edit_interval_s)
    ana, chat = ana_alone(telegram)
    fake_brain.reply_for = lambda request: "one two three four five six"

    async def one_delta_per_screen_update(request, index: int, sent: str) -> None:
        if sent:  # let the user see each piece before the next is generated
            await eventually(lambda: telegram.transcript(chat) == [sent], f"{sent!r} on screen")

    fake_brain.before_delta = one_delta_per_screen_update
    telegram.fail_next("editMessageText", retry_after=1)

    telegram.send_text(ana, chat, "count to six")

    message = await telegram.wait_for_text(chat, "one two three four five six")
    assert telegram.bot_messages(chat) == [message]
    assert message.versions == ["one two", "one two three four", "one two three four five six"]
    # the edit Telegram refused with a 429 was made again after the wait, not dropped
    assert [c.status for c in telegram.calls_to("editMessageText")] == [429, 200, 200]


async def test_text_arriving_while_telegram_makes_the_bot_wait_is_shown_in_one_edit(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana, chat = ana_alone(telegram)
    words = [f"w{i}" for i in range(40)]
    fake_brain.reply_for = lambda request: " ".join(words)
    fake_brain.deltas = by_words(1)

    async def stream_fast_while_held(request, index: int, sent: str) -> None:
        if index == 1:
            await eventually(lambda: telegram.transcript(chat) == ["w0"], "the first word on screen")
        if index == 2:
            await eventually(lambda: telegram.calls_to("editMessageText", ok=False), "Telegram refusing an edit")

    fake_brain.before_delta = stream_fast_while_held
    telegram.fail_next("editMessageText", retry_after=1)

    telegram.send_text(ana, chat, "go")

    message = await telegram.wait_for_text(chat, " ".join(words))
    assert [c.status for c in telegram.calls_to("editMessageText")][0] == 429
    # 39 deltas came in while the chat was on hold; they reached the screen in a couple of edits
    assert len(message.versions) <= 4
    assert len(telegram.calls_to("editMessageText")) <= 4


def long_reply() -> str:
    paragraph = " ".join(f"Sentence {i} of this paragraph says something worth reading." for i in range(30))
    return "\n\n".join(f"Part {p}. {paragraph}" for p in range(6))


async def test_a_reply_over_4096_characters_is_split_at_boundaries_and_nothing_is_lost(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana, chat = ana_alone(telegram)
    reply = long_reply()
    assert len(reply) > 2 * 4096
    fake_brain.reply_for = lambda request: reply
    fake_brain.deltas = by_words(40)

    telegram.send_text(ana, chat, "tell me everything")

    await eventually(lambda: " ".join(telegram.transcript(chat)).split() == reply.split(), "the whole long reply")
    pieces = telegram.transcript(chat)
    assert len(pieces) >= 3
    assert all(utf16_len(piece) <= 4096 for piece in pieces)
    assert all(piece.endswith(".") for piece in pieces)  # cut between sentences, not inside one
    assert all(c.ok for c in telegram.calls_to("sendMessage"))
    # the one refusal an edit may meet: "not modified", where the bot checks that a complete piece is still there
    assert all(c.ok or c.params["text"] in pieces for c in telegram.calls_to("editMessageText"))


async def test_markup_telegram_cannot_parse_is_resent_as_plain_text(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(parse_mode="Markdown")
    ana, chat = ana_alone(telegram)
    fake_brain.reply_for = lambda request: "Use *bold* for emphasis and *this never closes"

    telegram.send_text(ana, chat, "how do I format?")

    message = await telegram.wait_for_text(chat, "Use *bold* for emphasis and *this never closes")
    assert message.parse_mode is None
    refused = [c for c in telegram.calls if c.params.get("parse_mode") == "Markdown" and not c.ok]
    assert refused, "the reply was first tried with Markdown"


async def test_well_formed_markup_keeps_its_parse_mode(telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot):
    await start_bot(parse_mode="Markdown")
    ana, chat = ana_alone(telegram)
    fake_brain.reply_for = lambda request: "Use *bold* for emphasis."

    telegram.send_text(ana, chat, "how do I format?")

    message = await telegram.wait_for_text(chat, "Use *bold* for emphasis.")
    assert message.parse_mode == "Markdown"
