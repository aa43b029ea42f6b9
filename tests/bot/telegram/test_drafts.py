"""In a private chat a reply streams as Telegram's native draft (sendMessageDraft), then is sent once whole, a
message per piece; groups, and chats where Telegram refuses drafts, stream by edits."""

from __future__ import annotations

from bot.splitting import split_message
from bot.telegram.limits import MESSAGE_LIMIT
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, by_words
from tests.support.telegram_api import TelegramApiServer

REPLY = "\n\n".join(" ".join(f"Paragraph {p} sentence {s} has a few words." for s in range(70)) for p in range(3))
PIECES = split_message(REPLY, MESSAGE_LIMIT)


async def test_a_private_chat_streams_by_drafts_and_ends_with_one_message_per_piece(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(drafts=True)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.reply_for = lambda request: REPLY
    fake_brain.deltas = by_words(40)

    async def let_a_draft_show(request, index: int, sent: str) -> None:
        if sent:
            await eventually(lambda: telegram.drafts and telegram.drafts[-1][2] in sent, "the draft growing")

    fake_brain.before_delta = let_a_draft_show

    telegram.send_text(ana, chat, "tell me everything")

    await eventually(lambda: fake_brain.messages, "the reply sent and mapped")
    assert telegram.transcript(chat) == PIECES
    assert len(telegram.calls_to("sendMessage")) == len(PIECES), "one message per piece"
    assert not telegram.calls_to("editMessageText", ok=True), "no edits: the drafts animated"
    drafted = [text for chat_id, _, text in telegram.drafts if chat_id == chat.id]
    assert len(drafted) > len(PIECES), "the draft animated as the reply grew"
    assert len({draft_id for _, draft_id, _ in telegram.drafts}) == 1 and telegram.drafts[0][1] != 0
    [turn] = fake_brain.replies
    assert sorted(fake_brain.messages_of(turn)) == sorted(str(m.message_id) for m in telegram.bot_messages(chat))


async def test_where_drafts_are_refused_the_reply_streams_by_edits(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot(drafts=True)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    telegram.fail_next("sendMessageDraft", description="Bad Request: method is unavailable")

    telegram.send_text(ana, chat, "hello there")

    await telegram.wait_for_text(chat, "You said: hello there")
    assert telegram.transcript(chat) == ["You said: hello there"]


async def test_a_group_streams_by_edits(telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot):
    await start_bot(drafts=True)
    ana = telegram.user("Ana", "ana")
    group = telegram.group("Book club", owner=ana)

    telegram.send_text(ana, group, "@ownchat_test_bot hello there")

    await telegram.wait_for_text(group, "You said: hello there")
    assert not telegram.drafts
