"""Telegram's flood waits (429 with `retry_after`) hold one chat only: the bot honours them, sends nothing
there meanwhile (not even "typing…"), and the first edit after a wait shows the newest text."""

from __future__ import annotations

import asyncio
import time

from bot.telegram.outbox import ChatPacer
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, by_words
from tests.support.telegram_api import TelegramApiServer

WORDS = [f"w{i}" for i in range(40)]


async def test_after_each_flood_wait_the_next_edit_carries_the_newest_text(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.reply_for = lambda request: " ".join(WORDS)
    fake_brain.deltas = by_words(1)

    async def stream_fast_once_telegram_refuses(request, index: int, sent: str) -> None:
        if index == 1:
            await eventually(lambda: telegram.transcript(chat) == ["w0"], "the first word on screen")
        if index == 2:
            await eventually(lambda: telegram.calls_to("editMessageText", ok=False), "Telegram refusing an edit")

    fake_brain.before_delta = stream_fast_once_telegram_refuses
    telegram.fail_next("editMessageText", retry_after=1, times=3)

    telegram.send_text(ana, chat, "go")

    message = await telegram.wait_for_text(chat, " ".join(WORDS))
    edits = telegram.calls_to("editMessageText")
    # three refusals in a row, each waited out; every try after a wait carried the whole reply, so one edit did
    assert [c.status for c in edits] == [429, 429, 429, 200]
    assert [c.params["text"] for c in edits] == ["w0 w1"] + [" ".join(WORDS)] * 3
    assert message.versions == ["w0", " ".join(WORDS)]


async def test_a_flood_wait_in_a_busy_group_holds_that_group_only(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana, bob = telegram.user("Ana", "ana"), telegram.user("Bob", "bob")
    group, bob_chat = telegram.group("Busy group", owner=ana), telegram.private_chat(bob)
    fake_brain.reply_for = lambda request: f"Answer to {request.text}, in a few words"
    wait_s = 5.0  # longer than the typing refresh, so that a "typing…" during the wait would show

    async def one_delta_per_screen_update(request, index: int, sent: str) -> None:
        if sent and request.chat_id == str(group.id):
            await eventually(lambda: sent in telegram.transcript(group), f"{sent!r} in the group")

    fake_brain.before_delta = one_delta_per_screen_update
    telegram.fail_next("editMessageText", retry_after=wait_s, when=lambda params: params["chat_id"] == group.id)

    telegram.send_text(ana, group, "@ownchat_test_bot hello all")
    [refused] = await eventually(lambda: telegram.calls_to("editMessageText", ok=False), "the group's flood wait")
    telegram.send_text(bob, bob_chat, "quick one")

    await telegram.wait_for_text(bob_chat, "Answer to quick one, in a few words")
    group_edits_since = [c for c in telegram.calls_to("editMessageText") if c.params["chat_id"] == group.id]
    assert group_edits_since == [refused], "Bob was answered in full while the group still waited"

    await telegram.wait_for_text(group, "Answer to hello all, in a few words")
    group_calls = [c for c in telegram.calls if c.params.get("chat_id") == group.id]
    during_wait = [c.method for c in group_calls if refused.at < c.at < refused.at + wait_s]
    assert during_wait == [], "nothing at all went to the group while it waited, not even a chat action"
    assert any(c.method == "sendChatAction" for c in group_calls if c.at < refused.at)


def test_a_group_gets_twenty_messages_a_minute_and_other_chats_are_not_held_by_it():
    pacer = ChatPacer(0.0, group_per_minute=20)
    group, direct = -1_000_000_000_001, 1001

    async def take(chat: int, count: int) -> None:
        for _ in range(count):
            await pacer.wait_turn(chat)

    asyncio.run(take(group, 20))
    now = time.monotonic()
    assert pacer.free_at(group) >= now + 59  # the twenty-first waits for the first to be a minute old
    assert pacer.free_at(direct) <= now
    asyncio.run(take(direct, 50))  # a direct chat has no such budget
    assert pacer.free_at(direct) <= time.monotonic()
