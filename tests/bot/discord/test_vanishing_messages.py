"""A streamed reply whose message vanishes (a moderator, an auto-mod bot or the member deletes it), or whose
edits Discord refuses, goes on in a new message: the member ends up with the whole reply, in order."""

from __future__ import annotations

import pytest

from bot.discord.limits import MESSAGE_LIMIT
from bot.splitting import split_message
from tests.bot.discord.test_messages import contents, one_delta_per_screen_update
from tests.support.discord_api import LocalDiscord
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, by_words

# three paragraphs of about 1,500 characters: three messages, one per paragraph
REPLY = "\n\n".join(" ".join(f"Paragraph {p} sentence {s} says a little." for s in range(40)) for p in range(3))
PIECES = split_message(REPLY, MESSAGE_LIMIT)
DELTAS = by_words(30)
EDITS = r"/channels/\d+/messages/\d+"


def test_the_reply_fills_three_messages():
    assert len(PIECES) == 3


@pytest.mark.parametrize("piece", [0, 1, 2], ids=["first", "middle", "last"])
async def test_a_message_deleted_while_the_reply_streams_into_it_is_posted_again_and_nothing_is_lost(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot, piece: int
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.reply_for = lambda r: REPLY
    fake_brain.deltas = DELTAS
    deltas = DELTAS(REPLY)
    deleted: list[str] = []

    async def delete_the_message_being_written(request, index: int, sent: str) -> None:
        if not sent:
            return
        shown = split_message(sent, MESSAGE_LIMIT)
        await eventually(lambda: contents(local_discord.bot_messages(dm)) == shown, "the reply so far on screen")
        still_growing = len(split_message(sent + deltas[index], MESSAGE_LIMIT)) == len(shown)
        if not deleted and len(shown) == piece + 1 and still_growing:
            message = local_discord.bot_messages(dm)[piece]
            deleted.append(message["content"])
            local_discord.delete_message(int(message["id"]))  # the next words go into a message that is gone

    fake_brain.before_delta = delete_the_message_being_written
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "tell me everything")

    await eventually(lambda: contents(local_discord.bot_messages(dm)) == PIECES, "the whole reply, in order")
    assert deleted and PIECES[piece].startswith(deleted[0])
    assert any(c.method == "PATCH" and c.status == 404 for c in local_discord.calls), "the edit found it gone"


async def test_a_message_discord_will_not_let_the_bot_edit_is_replaced_by_a_new_one(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.reply_for = lambda r: "one two three four five six"
    fake_brain.before_delta = one_delta_per_screen_update(local_discord, dm)
    local_discord.fail_next(
        "PATCH", EDITS, status=403, code=50005, message="Cannot edit a message authored by another user"
    )
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "count to six")

    [reply] = await eventually(
        lambda: (
            (found := local_discord.bot_messages(dm)) and contents(found) == ["one two three four five six"] and found
        ),
        "the whole reply in one message",
    )
    assert local_discord.edits[int(reply["id"])] == ["one two three four", "one two three four five six"]
    assert len(local_discord.deleted) == 1, "the message stuck at its first words was taken away"


async def test_edits_refused_with_a_rate_limit_are_made_after_the_wait_and_nothing_is_lost(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.reply_for = lambda r: "Once upon a time there was a tiny model."
    fake_brain.before_delta = one_delta_per_screen_update(local_discord, dm)
    local_discord.fail_next("PATCH", EDITS, retry_after=0.2, times=3)
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "tell me a story")

    await eventually(
        lambda: contents(local_discord.bot_messages(dm)) == ["Once upon a time there was a tiny model."],
        "the whole reply in one message",
    )
    assert [c.status for c in local_discord.calls if c.method == "PATCH"][:3] == [429, 429, 429]


async def test_an_answer_whose_question_was_deleted_meanwhile_still_arrives(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    ada = local_discord.add_user("ada")
    local_discord.join(guild, ada)
    question: list[dict] = []

    async def the_question_is_deleted_first(request, index: int, sent: str) -> None:
        if index == 0:
            local_discord.delete_message(int(question[0]["id"]))

    fake_brain.before_delta = the_question_is_deleted_first
    await start_bot(fake_brain.url)

    question.append(await local_discord.say(ada, general, f"{local_discord.mention()} quick question"))

    [answer] = await eventually(lambda: local_discord.bot_messages(general), "the answer in the channel")
    await eventually(lambda: answer["content"] == "You said: quick question", "the whole answer")
    assert "message_reference" not in answer  # it stands on its own, as Discord shows a reply to nothing


@pytest.mark.parametrize("piece", [0, 1, 2], ids=["first", "middle", "last"])
async def test_a_complete_piece_deleted_while_the_reply_streams_on_is_shown_again_and_the_map_names_what_exists(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot, piece: int
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.reply_for = lambda r: REPLY
    fake_brain.deltas = DELTAS
    deltas = DELTAS(REPLY)
    deleted: list[str] = []

    async def delete_a_piece_once_the_last_one_grows(request, index: int, sent: str) -> None:
        shown = split_message(sent, MESSAGE_LIMIT)
        if deleted or len(shown) < 3 or len(split_message(sent + deltas[index], MESSAGE_LIMIT)) != 3:
            return
        await eventually(lambda: contents(local_discord.bot_messages(dm)) == shown, "the reply so far on screen")
        message = local_discord.bot_messages(dm)[piece]
        deleted.append(message["content"])
        local_discord.delete_message(int(message["id"]))

    fake_brain.before_delta = delete_a_piece_once_the_last_one_grows
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "tell me everything")

    await eventually(lambda: fake_brain.messages, "the reply's messages mapped")
    assert deleted
    shown = local_discord.bot_messages(dm)
    assert contents(shown) == PIECES, "every piece, in order, exactly once"
    [turn] = fake_brain.replies
    assert sorted(fake_brain.messages_of(turn)) == sorted(m["id"] for m in shown)
