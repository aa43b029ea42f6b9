"""A streamed reply whose message vanishes (a member or a moderator deletes it) or whose edits Telegram refuses
for good goes on in a new message: the member ends up with the whole reply, in order."""

from __future__ import annotations

import pytest

from bot.splitting import split_message
from bot.telegram.limits import MESSAGE_LIMIT
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, by_words
from tests.support.telegram_api import TelegramApiServer

# three paragraphs of about 3,000 characters: three messages, one per paragraph
REPLY = "\n\n".join(" ".join(f"Paragraph {p} sentence {s} has a few words." for s in range(70)) for p in range(3))
PIECES = split_message(REPLY, MESSAGE_LIMIT)
DELTAS = by_words(40)


def test_the_reply_fills_three_messages():
    assert len(PIECES) == 3


@pytest.mark.parametrize("piece", [0, 1, 2], ids=["first", "middle", "last"])
async def test_a_message_deleted_while_the_reply_streams_into_it_is_posted_again_and_nothing_is_lost(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot, piece: int
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.reply_for = lambda request: REPLY
    fake_brain.deltas = DELTAS
    deltas = DELTAS(REPLY)

    async def delete_the_message_being_written(request, index: int, sent: str) -> None:
        if not sent:
            return
        shown = split_message(sent, MESSAGE_LIMIT)
        await eventually(lambda: telegram.transcript(chat) == shown, "the reply so far on screen")
        still_growing = len(split_message(sent + deltas[index], MESSAGE_LIMIT)) == len(shown)
        if not telegram.deleted and len(shown) == piece + 1 and still_growing:
            telegram.delete(telegram.bot_messages(chat)[piece])  # the next words go into a message that is gone

    fake_brain.before_delta = delete_the_message_being_written

    telegram.send_text(ana, chat, "tell me everything")

    await eventually(lambda: telegram.transcript(chat) == PIECES, "the whole reply, in order")
    assert [m.text for m in telegram.deleted] == [PIECES[piece][: len(telegram.deleted[0].text)]]
    assert telegram.calls_to("editMessageText", ok=False), "the bot found the message gone when it edited it"


async def test_a_message_telegram_will_not_let_the_bot_edit_is_replaced_by_a_new_one(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.reply_for = lambda request: "one two three four five six"

    async def one_delta_per_screen_update(request, index: int, sent: str) -> None:
        if sent:
            await eventually(lambda: telegram.transcript(chat) == [sent], f"{sent!r} on screen")

    fake_brain.before_delta = one_delta_per_screen_update
    telegram.fail_next("editMessageText", description="Bad Request: message can't be edited")

    telegram.send_text(ana, chat, "count to six")

    await eventually(lambda: telegram.transcript(chat) == ["one two three four five six"], "the whole reply")
    # the message stuck at its first words is gone, and the reply goes on in the one that replaced it
    assert [m.text for m in telegram.deleted] == ["one two"]
    assert telegram.bot_messages(chat)[0].versions == ["one two three four", "one two three four five six"]


def streamed_as(text: str):
    """Deltas that stream `text`, whatever the brain's final reply is (it may trim or differ from what streamed)."""
    return lambda reply: DELTAS(text)


async def test_when_the_final_text_changes_a_vanished_first_piece_the_pieces_after_it_move_below_it(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    streamed = REPLY.replace("Paragraph 0 sentence 0", "Paragraph zero sentence 0", 1)
    fake_brain.reply_for = lambda request: REPLY
    fake_brain.deltas = streamed_as(streamed)
    last = len(DELTAS(streamed)) - 1

    async def delete_the_first_piece_before_the_end(request, index: int, sent: str) -> None:
        if sent:
            shown = split_message(sent, MESSAGE_LIMIT)
            await eventually(lambda: telegram.transcript(chat) == shown, "the reply so far on screen")
        if index == last:
            telegram.delete(telegram.bot_messages(chat)[0])

    fake_brain.before_delta = delete_the_first_piece_before_the_end

    telegram.send_text(ana, chat, "tell me everything")

    await eventually(lambda: telegram.transcript(chat) == PIECES, "the whole final reply, in order")
    assert len(telegram.deleted) == 3  # the first by the member; the two after it by the bot, to post them below


async def test_a_final_text_shorter_than_what_streamed_leaves_no_stale_message(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fourth = ("A fourth paragraph that the final reply does not keep. " * 30).strip()
    streamed = REPLY + "\n\n" + fourth
    assert len(split_message(streamed, MESSAGE_LIMIT)) == 4
    fake_brain.reply_for = lambda request: REPLY
    # a last, empty delta: the brain waits until the whole streamed text (all four pieces) is on screen before
    # it ends the reply with a shorter final text
    fake_brain.deltas = lambda reply: [*streamed_as(streamed)(reply), ""]

    async def one_update_at_a_time(request, index: int, sent: str) -> None:
        if sent:
            shown = split_message(sent, MESSAGE_LIMIT)
            await eventually(lambda: telegram.transcript(chat) == shown, "the reply so far on screen")

    fake_brain.before_delta = one_update_at_a_time

    telegram.send_text(ana, chat, "tell me everything")

    await eventually(
        lambda: telegram.transcript(chat) == PIECES and telegram.deleted, "the final reply alone, the stale piece gone"
    )
    [stale] = telegram.deleted
    assert fourth.startswith(stale.text)


@pytest.mark.parametrize("piece", [0, 1, 2], ids=["first", "middle", "last"])
async def test_a_complete_piece_deleted_while_the_reply_streams_on_is_shown_again_and_the_map_names_what_exists(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot, piece: int
):
    await start_bot()
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    fake_brain.reply_for = lambda request: REPLY
    fake_brain.deltas = DELTAS
    deltas = DELTAS(REPLY)

    async def delete_a_piece_once_the_last_one_grows(request, index: int, sent: str) -> None:
        shown = split_message(sent, MESSAGE_LIMIT)
        if telegram.deleted or len(shown) < 3 or len(split_message(sent + deltas[index], MESSAGE_LIMIT)) != 3:
            return
        await eventually(lambda: telegram.transcript(chat) == shown, "the reply so far on screen")
        telegram.delete(telegram.bot_messages(chat)[piece])

    fake_brain.before_delta = delete_a_piece_once_the_last_one_grows

    telegram.send_text(ana, chat, "tell me everything")

    await eventually(lambda: fake_brain.messages, "the reply's messages mapped")
    assert telegram.deleted
    assert telegram.transcript(chat) == PIECES, "every piece, in order, exactly once"
    [turn] = fake_brain.replies
    shown = [str(m.message_id) for m in telegram.bot_messages(chat)]
    assert sorted(fake_brain.messages_of(turn)) == sorted(shown)
