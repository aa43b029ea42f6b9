"""A message whose answer the bot never learned (the connection dropped after the brain stored the turn, a proxy
answered 502, the stream broke off before its end) is asked again with its idempotency key: the member sees one
reply, the one the brain kept, and can rate it."""

from __future__ import annotations

import pytest

from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, LostAfterStoring
from tests.support.telegram_api import TelegramApiServer


@pytest.mark.parametrize("how", ["drop", "502", "before_done"])
async def test_a_reply_the_brain_kept_but_the_bot_never_got_is_shown_once_and_rateable(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot, how
):
    await start_bot(retry_window_s=60)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    generation = iter(["The first answer, the one kept.", "A second answer nobody should see."])
    fake_brain.reply_for = lambda request: next(generation)
    fake_brain.fail_next("chat", LostAfterStoring(how))  # type: ignore[arg-type]

    telegram.send_text(ana, chat, "hello")

    reply = await telegram.wait_for_text(chat, "The first answer, the one kept.")
    assert telegram.transcript(chat) == ["The first answer, the one kept."]
    [(key, kept)] = fake_brain.kept.items()
    await eventually(lambda: fake_brain.messages_of(kept.turn_id or "") == [str(reply.message_id)], "the map")
    assert telegram.transcript(chat) == ["The first answer, the one kept."]
    assert [r.request_id for r in fake_brain.requests] == [key[1], key[1]]
    assert [t.text for turns in fake_brain.turns.values() for t in turns] == ["hello", kept.reply]
    telegram.react(ana, reply, "👍")
    await eventually(lambda: fake_brain.ratings.get((f"telegram:{ana.id}", kept.turn_id or "")) == 1, "a rating")
