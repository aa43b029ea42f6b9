from __future__ import annotations

from bot.telegram import replying
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain
from tests.support.telegram_api import TelegramApiServer


def group_with(telegram: TelegramApiServer):
    ana, bob = telegram.user("Ana", "ana"), telegram.user("Bob", "bob")
    return ana, bob, telegram.group("Book club", owner=ana)


async def test_in_a_group_the_bot_answers_a_mention_and_nothing_else(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana, bob, group = group_with(telegram)

    telegram.send_text(ana, group, "what did everyone think of chapter 3?")
    telegram.send_text(bob, group, "loved it")
    telegram.send_text(ana, group, "@ownchat_test_bot   who wrote Middlemarch?")

    reply = await telegram.wait_for_text(group, "You said: who wrote Middlemarch?")
    assert reply.reply_to is not None and reply.reply_to.text.endswith("who wrote Middlemarch?")
    request = fake_brain.requests[0]
    assert (request.user_id, request.chat_id, request.chat_kind.value) == (str(ana.id), str(group.id), "group")
    # a member's messages in a chat are handled in order: once Bob is answered, his earlier one was passed over,
    # as Ana's was before her mention
    telegram.send_text(bob, group, "@ownchat_test_bot me too")
    await telegram.wait_for_text(group, "You said: me too")
    assert [r.text for r in fake_brain.requests] == ["who wrote Middlemarch?", "me too"]


async def test_in_a_group_a_reply_to_the_bot_is_answered(telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot):
    await start_bot()
    ana, bob, group = group_with(telegram)
    telegram.send_text(ana, group, "@ownchat_test_bot hi")
    first = await telegram.wait_for_text(group, "You said: hi")

    telegram.send_text(bob, group, "and what about you?", reply_to=first)

    await telegram.wait_for_text(group, "You said: and what about you?")
    # the replied-to message travels as context
    assert fake_brain.requests[1].context[0].text == "You said: hi"
    assert fake_brain.requests[1].context[0].from_bot


async def test_in_a_group_commands_are_answered_unless_meant_for_another_bot(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana, _, group = group_with(telegram)

    telegram.send_text(ana, group, "/help@some_other_bot")
    telegram.send_text(ana, group, "/dance@some_other_bot")
    telegram.send_text(ana, group, "/help")

    reply = await telegram.wait_for_reply(group)
    assert reply.text.startswith("Talk to me in plain words.")
    telegram.send_text(ana, group, "/dance@ownchat_test_bot")
    assert (await telegram.wait_for_reply(group, after=1)).text == "I don't know /dance. Try /help."
    assert len(telegram.bot_messages(group)) == 2


async def test_with_group_replies_all_every_group_message_is_answered(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(group_replies="all")
    ana, _, group = group_with(telegram)

    telegram.send_text(ana, group, "anyone here?")

    await telegram.wait_for_text(group, "You said: anyone here?")


async def test_retry_of_another_members_reply_is_refused_in_a_reply_to_them_that_goes_away(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot, monkeypatch
):
    monkeypatch.setattr(replying, "SHORT_LIVED_S", 0.2)
    await start_bot()
    ana, bob, group = group_with(telegram)
    telegram.send_text(ana, group, "@ownchat_test_bot hi")
    first = await telegram.wait_for_text(group, "You said: hi")
    await eventually(lambda: fake_brain.messages, "the reply mapped")

    telegram.send_text(bob, group, "/retry", reply_to=first)

    refusal = await telegram.wait_for_reply(group, after=1)
    assert "no reply of mine" in refusal.text
    assert refusal.reply_to is not None and (refusal.reply_to.sender, refusal.reply_to.text) == (bob, "/retry")
    await eventually(lambda: refusal in telegram.deleted, "the refusal taken away a little later")
    assert telegram.transcript(group) == ["You said: hi"]
