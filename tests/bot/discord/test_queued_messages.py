"""A member's message that waits for their earlier one to be answered shows that it is queued."""

from __future__ import annotations

from bot.discord.cogs.chat import QUEUED
from tests.bot.discord.test_messages import answered
from tests.support.discord_api import LocalDiscord
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain


async def test_a_message_queued_behind_an_outage_shows_it_waits_and_is_answered_in_turn(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    await start_bot(fake_brain.url, retry_window_s=60)
    await fake_brain.stop()

    await local_discord.say(ada, dm, "are you there?")
    second = await local_discord.say(ada, dm, "hello?")

    await eventually(lambda: (int(second["id"]), QUEUED, True) in local_discord.bot_reactions, "⏳ on the second")
    assert fake_brain.requests == []  # still waiting: the brain is away
    await fake_brain.start()
    await answered(local_discord, dm, "You said: hello?")
    assert (int(second["id"]), QUEUED, False) in local_discord.bot_reactions  # taken back once its turn came
    assert [r.text for r in fake_brain.requests] == ["are you there?", "hello?"]
