"""Members rate the bot's replies on Discord with reactions and ask for a second reply (/retry, or "Answer again" on
one of its replies); against a real brain, whose kept ratings the member can see in their export."""

from __future__ import annotations

from typing import Any

from bot.client import BrainClient
from brain.api_models import UserRef
from brain.store import Store
from tests.support.brain_server import BrainHandle
from tests.support.brain_state import kept_ratings_become, turn_shown_by
from tests.support.discord_api import Channel, LocalDiscord, User
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, Refuse


def member(user: User) -> UserRef:
    return UserRef(platform="discord", user_id=str(user.id))


async def ratings_become(brain_api: BrainClient, user: User, expected: list[tuple[str, int]]) -> None:
    await kept_ratings_become(brain_api, member(user), expected)


async def answered(local_discord: LocalDiscord, user: User, channel: Channel, text: str) -> dict[str, Any]:
    seen = len(local_discord.bot_messages(channel))
    await local_discord.say(user, channel, text)
    [reply] = await eventually(lambda: local_discord.bot_messages(channel)[seen:][:1], f"the answer to {text!r}")
    return reply


async def test_reactions_on_a_reply_rate_it_and_taking_one_back_leaves_what_the_others_say(
    local_discord: LocalDiscord, start_bot, brain: BrainHandle, brain_api: BrainClient, store: Store
):
    guild = local_discord.add_guild("Readers")
    channel = local_discord.add_channel(guild, "general")
    ann, bob = local_discord.add_user("ann"), local_discord.add_user("bob")
    for user in (ann, bob):
        local_discord.join(guild, user)
        await brain_api.opt_in(member(user))
    await start_bot(brain.url, api_key=brain.api_key)
    question = await local_discord.say(ann, channel, f"{local_discord.mention()} tell me about rivers")
    [reply] = await eventually(lambda: local_discord.bot_messages(channel), "the bot's reply")
    turn = await turn_shown_by(store, "discord", channel.id, reply["id"])

    await local_discord.react(bob, int(question["id"]), "👍")  # on a member's message: rates nothing
    await local_discord.react(bob, int(reply["id"]), "👍")
    await ratings_become(brain_api, bob, [(turn.turn_id, 1)])

    await local_discord.react(bob, int(reply["id"]), "👎")  # Discord keeps both: the newer one rates
    await ratings_become(brain_api, bob, [(turn.turn_id, -1)])

    await local_discord.unreact(bob, int(reply["id"]), "👍")  # 👎 still stands
    await local_discord.react(ann, int(reply["id"]), "👍")
    await ratings_become(brain_api, ann, [(turn.turn_id, 1)])
    assert [(r.turn_id, r.rating) for r in (await brain_api.export(member(bob))).ratings] == [(turn.turn_id, -1)]

    await local_discord.unreact(bob, int(reply["id"]), "👎")
    await ratings_become(brain_api, bob, [])
    assert not local_discord.unhandled


async def test_retry_and_answer_again_give_a_second_reply_paired_with_the_first(
    local_discord: LocalDiscord, start_bot, brain: BrainHandle, store: Store
):
    ann = local_discord.add_user("ann")
    dm = local_discord.dm(ann)
    await start_bot(brain.url, api_key=brain.api_key)
    first = await answered(local_discord, ann, dm, "Name a colour")
    first_turn = await turn_shown_by(store, "discord", dm.id, first["id"])
    last = await answered(local_discord, ann, dm, "Name a fruit")
    last_turn = await turn_shown_by(store, "discord", dm.id, last["id"])

    retried = await local_discord.slash(ann, dm, "retry")
    [again] = await local_discord.wait_for_answers(retried)
    again_turn = await turn_shown_by(store, "discord", dm.id, again["id"])
    picked = await local_discord.app_command(ann, int(first["id"]), "Answer again")
    [second] = await local_discord.wait_for_answers(picked)
    second_turn = await turn_shown_by(store, "discord", dm.id, second["id"])

    assert again_turn.retry_of == last_turn.turn_id
    assert second_turn.retry_of == first_turn.turn_id
    assert second_turn.prompt[-1] == first_turn.prompt[-1]  # the same message, answered again
    assert int(first["id"]) in local_discord.messages  # the first reply stays


async def test_answer_again_on_a_members_message_says_what_it_is_for(
    local_discord: LocalDiscord, start_bot, brain: BrainHandle
):
    ann = local_discord.add_user("ann")
    dm = local_discord.dm(ann)
    await start_bot(brain.url, api_key=brain.api_key)
    mine = await local_discord.say(ann, dm, "hello")

    picked = await local_discord.app_command(ann, int(mine["id"]), "Answer again")

    [answer] = await local_discord.wait_for_answers(picked)
    assert "only what I answered" in answer["content"]


async def test_a_flood_of_one_members_toggles_leaves_their_last_rating_in_a_handful_of_calls(
    local_discord: LocalDiscord, start_bot, fake_brain: FakeBrain
):
    ann = local_discord.add_user("ann")
    dm = local_discord.dm(ann)
    await start_bot(fake_brain.url)
    reply = await answered(local_discord, ann, dm, "tell me about rivers")
    [turn] = await eventually(lambda: list(fake_brain.messages.values()), "the reply mapped")
    # the brain's rate limit meets the first rating that gets through: it is waited out
    fake_brain.fail_next("feedback", Refuse(429, "rate_limited", "Too many requests.", retry_after=1))
    reads_before = len(local_discord.calls)

    for _ in range(100):
        await local_discord.react(ann, int(reply["id"]), "👍")
        await local_discord.unreact(ann, int(reply["id"]), "👍")
    await local_discord.react(ann, int(reply["id"]), "👍")

    await eventually(lambda: fake_brain.ratings.get((f"discord:{ann.id}", turn)) == 1, "the member's 👍 at the brain")
    assert 2 <= fake_brain.asked["feedback"] <= 4  # the 429, then the newest state, once
    assert len([c for c in local_discord.calls[reads_before:] if c.method == "GET"]) <= 4


async def test_answer_again_on_another_members_reply_is_refused_to_the_presser_alone(
    local_discord: LocalDiscord, start_bot, fake_brain: FakeBrain
):
    guild = local_discord.add_guild("Readers")
    channel = local_discord.add_channel(guild, "general")
    ann, bob = local_discord.add_user("ann"), local_discord.add_user("bob")
    for user in (ann, bob):
        local_discord.join(guild, user)
    await start_bot(fake_brain.url)
    await local_discord.say(ann, channel, f"{local_discord.mention()} name a river")
    [reply] = await eventually(lambda: local_discord.bot_messages(channel), "the bot's reply")
    await eventually(lambda: fake_brain.messages, "the reply mapped")

    picked = await local_discord.app_command(bob, int(reply["id"]), "Answer again")

    [refusal] = await local_discord.wait_for_answers(picked)
    assert "no reply of mine" in refusal["content"]
    assert refusal["_visible_to"] == bob.id  # ephemeral: only bob sees it
    assert all("no reply of mine" not in m["content"] for m in local_discord.visible_messages(channel, ann))
