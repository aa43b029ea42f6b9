"""Members rate the bot's replies on Telegram (reactions, or the optional 👍/👎 buttons) and ask for a second reply
(/retry); against a real brain, whose kept ratings the member can see in their export."""

from __future__ import annotations

from bot.client import BrainClient
from bot.splitting import split_message
from bot.telegram.limits import MESSAGE_LIMIT
from brain.api_models import UserRef
from brain.store import Store
from tests.support.brain_server import BrainHandle
from tests.support.brain_state import kept_ratings_become, turn_shown_by
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, Refuse, by_words
from tests.support.telegram_api import TelegramApiServer, TgChat, TgMessage, TgUser


def member(user: TgUser) -> UserRef:
    return UserRef(platform="telegram", user_id=str(user.id))


async def ratings_become(brain_api: BrainClient, user: TgUser, expected: list[tuple[str, int]]) -> None:
    await kept_ratings_become(brain_api, member(user), expected)


async def answered(telegram: TelegramApiServer, user: TgUser, chat: TgChat, text: str, **kw) -> TgMessage:
    seen = len(telegram.bot_messages(chat))
    telegram.send_text(user, chat, text, **kw)
    return await telegram.wait_for_reply(chat, after=seen, what=f"the answer to {text!r}")


async def test_a_reaction_rates_a_reply_a_changed_one_changes_it_and_a_removed_one_removes_it(
    telegram: TelegramApiServer, start_bot, brain: BrainHandle, brain_api: BrainClient, store: Store
):
    await start_bot(brain_url=brain.url, api_key=brain.api_key)
    ann = telegram.user("Ann")
    chat = telegram.private_chat(ann)
    await brain_api.opt_in(member(ann))
    reply = await answered(telegram, ann, chat, "Tell me about the sea")
    turn = await turn_shown_by(store, "telegram", chat.id, reply.message_id)

    telegram.react(ann, reply, "👍")
    await ratings_become(brain_api, ann, [(turn.turn_id, 1)])

    telegram.react(ann, reply, "👎")
    await ratings_become(brain_api, ann, [(turn.turn_id, -1)])

    telegram.react(ann, reply, "👎", "🔥")  # another reaction rates nothing and changes nothing
    telegram.react(ann, reply)
    await ratings_become(brain_api, ann, [])
    assert "message_reaction" in telegram.allowed_updates


async def test_retry_as_a_reply_answers_that_message_again_and_pairs_the_two_replies(
    telegram: TelegramApiServer, start_bot, brain: BrainHandle, brain_api: BrainClient, store: Store
):
    await start_bot(brain_url=brain.url, api_key=brain.api_key)
    ann = telegram.user("Ann")
    chat = telegram.private_chat(ann)
    first = await answered(telegram, ann, chat, "Name a colour")
    first_turn = await turn_shown_by(store, "telegram", chat.id, first.message_id)
    last = await answered(telegram, ann, chat, "Name a fruit")
    last_turn = await turn_shown_by(store, "telegram", chat.id, last.message_id)

    again = await answered(telegram, ann, chat, "/retry")  # not a reply: the last answer, again
    again_turn = await turn_shown_by(store, "telegram", chat.id, again.message_id)
    second = await answered(telegram, ann, chat, "/retry", reply_to=first)

    second_turn = await turn_shown_by(store, "telegram", chat.id, second.message_id)
    assert again_turn.retry_of == last_turn.turn_id
    assert second_turn.retry_of == first_turn.turn_id
    assert second_turn.prompt[-1] == first_turn.prompt[-1]  # the same message, answered again
    assert (chat.id, first.message_id) in telegram.messages  # the first reply stays


async def test_a_rating_button_under_a_reply_rates_it_for_whoever_presses_it(
    telegram: TelegramApiServer, start_bot, brain: BrainHandle, brain_api: BrainClient, store: Store
):
    # edits paced as in production: unpaced, a streamed reply would use up a group's twenty calls a minute
    await start_bot(brain_url=brain.url, api_key=brain.api_key, rating_buttons=True, edit_interval_s=1.0)
    ann, bob = telegram.user("Ann"), telegram.user("Bob")
    group = telegram.group("Readers", owner=ann)
    for user in (ann, bob):
        await brain_api.opt_in(member(user))
    reply = await answered(telegram, ann, group, "@ownchat_test_bot say something kind")
    turn = await turn_shown_by(store, "telegram", group.id, reply.message_id)
    await eventually(lambda: reply.buttons == [("👍", "rate:1"), ("👎", "rate:-1")], "rating buttons under the reply")

    query = telegram.press(bob, reply, "👎")

    answer = await eventually(lambda: telegram.callback_answers[query], "Bob told what his press did")
    assert answer["text"].startswith("You disliked this reply.")
    await ratings_become(brain_api, bob, [(turn.turn_id, -1)])
    assert reply.buttons, "the buttons stay for the others"


async def test_every_piece_of_a_long_reply_shows_its_turn(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ann = telegram.user("Ann")
    chat = telegram.private_chat(ann)
    reply = "\n\n".join(" ".join(f"Part {p} goes on for a while." for _ in range(120)) for p in range(3))
    fake_brain.reply_for = lambda request: reply
    fake_brain.deltas = by_words(200)

    telegram.send_text(ann, chat, "tell me everything")

    await eventually(lambda: telegram.transcript(chat) == split_message(reply, MESSAGE_LIMIT), "the whole reply")
    [turn_id] = fake_brain.replies
    shown = [str(m.message_id) for m in telegram.bot_messages(chat)]
    await eventually(lambda: fake_brain.messages_of(turn_id) == shown, "all three messages mapped to the reply")


async def test_a_reply_that_went_on_in_a_new_message_is_rated_there(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    await start_bot()
    ann = telegram.user("Ann")
    chat = telegram.private_chat(ann)
    fake_brain.reply_for = lambda request: "one two three four five six"

    async def delete_after_the_first_words(request, index: int, sent: str) -> None:
        if sent and not telegram.deleted:
            await eventually(lambda: telegram.transcript(chat) == [sent], f"{sent!r} on screen")
            telegram.delete(telegram.bot_messages(chat)[0])  # a moderator removes it while it streams

    fake_brain.before_delta = delete_after_the_first_words
    telegram.send_text(ann, chat, "count to six")
    await eventually(lambda: telegram.transcript(chat) == ["one two three four five six"], "the whole reply")
    [reply] = telegram.bot_messages(chat)
    [turn_id] = fake_brain.replies
    await eventually(lambda: fake_brain.messages_of(turn_id) == [str(reply.message_id)], "the new message mapped")

    telegram.react(ann, reply, "👍")

    await eventually(lambda: fake_brain.ratings == {(f"telegram:{ann.id}", turn_id): 1}, "the 👍 passed on")


async def test_a_flood_of_one_members_toggles_leaves_their_last_rating_in_a_handful_of_calls(
    telegram: TelegramApiServer, start_bot, fake_brain: FakeBrain
):
    await start_bot()
    ann = telegram.user("Ann")
    chat = telegram.private_chat(ann)
    reply = await answered(telegram, ann, chat, "Tell me about the sea")
    [turn] = await eventually(lambda: list(fake_brain.messages.values()), "the reply mapped")
    # the brain's rate limit meets the first rating that gets through: it is waited out
    fake_brain.fail_next("feedback", Refuse(429, "rate_limited", "Too many requests.", retry_after=1))

    for _ in range(100):
        telegram.react(ann, reply, "👍")
        telegram.react(ann, reply)
    telegram.react(ann, reply, "👍")

    await eventually(lambda: fake_brain.ratings.get((f"telegram:{ann.id}", turn)) == 1, "the member's 👍 at the brain")
    assert 2 <= fake_brain.asked["feedback"] <= 4  # the 429, then the newest state, once
