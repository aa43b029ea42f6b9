"""A message the brain could not take (it is down, or answers 503) is asked again for the configured window,
under one "still thinking…" notice that becomes the answer; past the window the member is told plainly."""

from __future__ import annotations

from bot.answering import NOT_ANSWERED, STILL_THINKING
from tests.bot.discord.test_messages import answered, contents
from tests.support.discord_api import LocalDiscord
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, Refuse


async def test_a_message_sent_while_the_brain_is_down_is_answered_in_place_of_the_notice(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    await start_bot(fake_brain.url, retry_window_s=60)
    await fake_brain.stop()

    await local_discord.say(ada, dm, "are you there?")
    [notice] = await eventually(lambda: local_discord.bot_messages(dm), "a notice in the DM")
    assert notice["content"] == STILL_THINKING
    await fake_brain.start()

    [reply] = await answered(local_discord, dm, "You said: are you there?")
    assert reply["id"] == notice["id"], "the notice became the answer"
    shown = local_discord.edits[int(reply["id"])]
    assert (shown[0], shown[-1]) == (STILL_THINKING, "You said: are you there?")
    assert [r.text for r in fake_brain.requests] == ["are you there?"]


async def test_a_message_refused_while_the_brain_is_busy_is_stored_once(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.fail_next("chat", Refuse(503, "busy", "Too busy."), times=8)
    await start_bot(fake_brain.url, retry_window_s=60)

    message = await local_discord.say(ada, dm, "patience")

    assert contents(await answered(local_discord, dm, "You said: patience")) == ["You said: patience"]
    assert {r.request_id for r in fake_brain.requests} == {message["id"]}
    assert [t.text for turns in fake_brain.turns.values() for t in turns] == ["patience", "You said: patience"]


async def test_past_the_window_the_notice_says_the_message_was_not_answered(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    await start_bot(fake_brain.url, retry_window_s=0.3)
    await fake_brain.stop()

    await local_discord.say(ada, dm, "hello?")

    [message] = await answered(local_discord, dm, NOT_ANSWERED)
    assert local_discord.edits[int(message["id"])] == [STILL_THINKING, NOT_ANSWERED]
