"""A message whose answer the bot never learned (the connection dropped after the brain stored the turn, a proxy
answered 502, the stream broke off before its end) is asked again with its idempotency key: the member sees one
reply, the one the brain kept, and can rate it."""

from __future__ import annotations

import pytest

from tests.bot.discord.test_messages import answered, contents
from tests.support.discord_api import LocalDiscord
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, LostAfterStoring


@pytest.mark.parametrize("how", ["drop", "502", "before_done"])
async def test_a_reply_the_brain_kept_but_the_bot_never_got_is_shown_once_and_rateable(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot, how
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    await start_bot(fake_brain.url, retry_window_s=60)
    generation = iter(["The first answer, the one kept.", "A second answer nobody should see."])
    fake_brain.reply_for = lambda request: next(generation)
    fake_brain.fail_next("chat", LostAfterStoring(how))  # type: ignore[arg-type]

    message = await local_discord.say(ada, dm, "hello")

    [reply] = await answered(local_discord, dm, "The first answer, the one kept.")
    assert contents(local_discord.bot_messages(dm)) == ["The first answer, the one kept."]
    [kept] = fake_brain.kept.values()
    await eventually(lambda: fake_brain.messages_of(kept.turn_id or "") == [reply["id"]], "the reply mapped")
    assert contents(local_discord.bot_messages(dm)) == ["The first answer, the one kept."]
    assert [r.request_id for r in fake_brain.requests] == [message["id"], message["id"]]
    assert [t.text for turns in fake_brain.turns.values() for t in turns] == ["hello", kept.reply]
    await local_discord.react(ada, int(reply["id"]), "👍")
    await eventually(lambda: fake_brain.ratings.get((f"discord:{ada.id}", kept.turn_id or "")) == 1, "a rating")
