"""Messages: where the bot answers, how replies stream and split, and what happens when the brain is away."""

from __future__ import annotations

import asyncio

from bot.client import BrainUnavailable
from bot.commands import friendly_error
from tests.support.discord_api import LocalDiscord
from tests.support.eventually import eventually
from tests.support.fake_brain import CutAfter, FakeBrain, Refuse, Silent, by_chars

UNAVAILABLE = friendly_error(BrainUnavailable(0, "unreachable", ""))


def contents(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages]


async def answered(local: LocalDiscord, channel, text: str) -> list[dict]:
    """Wait until the bot's messages in the channel end with `text`; return them."""
    return await eventually(
        lambda: (found := local.bot_messages(channel)) and found[-1]["content"].endswith(text) and found,
        f"the bot's messages in #{channel.name or 'dm'} ending with {text!r}",
    )


async def test_a_direct_message_is_answered_in_the_dm(local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "hello there")

    replies = await answered(local_discord, dm, "You said: hello there")
    assert contents(replies) == ["You said: hello there"]
    assert local_discord.typing_calls(dm), "a typing indicator shows while the model works"
    request = fake_brain.requests[0]
    assert (request.platform, request.user_id, request.chat_id, request.chat_kind.value) == (
        "discord",
        str(ada.id),
        str(dm.id),
        "direct",
    )
    assert request.display_name == "ada"


async def test_a_mention_in_a_guild_channel_gets_a_reply_and_other_talk_is_left_alone(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    ada, bob = local_discord.add_user("ada"), local_discord.add_user("bob")
    local_discord.join(guild, ada)
    local_discord.join(guild, bob)
    await start_bot(fake_brain.url)

    await local_discord.say(bob, general, "lunch anyone?")
    question = await local_discord.say(ada, general, f"{local_discord.mention()} what is a monad?")

    replies = await answered(local_discord, general, "You said: what is a monad?")
    assert contents(replies) == ["You said: what is a monad?"]
    assert replies[0]["message_reference"]["message_id"] == question["id"], "the answer replies to the question"
    assert [r.text for r in fake_brain.requests] == ["what is a monad?"]
    request = fake_brain.requests[0]
    assert (request.user_id, request.chat_id, request.chat_kind.value) == (
        str(ada.id),
        str(general.id),
        "group",
    )


async def test_the_bot_is_silent_outside_its_allowed_guilds_channels_and_roles(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild, elsewhere = local_discord.add_guild("club"), local_discord.add_guild("other")
    general, random = local_discord.add_channel(guild, "general"), local_discord.add_channel(guild, "random")
    other_general = local_discord.add_channel(elsewhere, "general")
    member = local_discord.add_role(guild, "member")
    ada, eve = local_discord.add_user("ada"), local_discord.add_user("eve")
    local_discord.join(guild, ada, member)
    local_discord.join(guild, eve)  # without the role
    local_discord.join(elsewhere, ada)
    await start_bot(
        fake_brain.url,
        allowed_guilds=[guild.id],
        allowed_channels=[general.id],
        allowed_roles=[member.id],
    )

    await local_discord.say(ada, random, f"{local_discord.mention()} not this channel")
    await local_discord.say(ada, other_general, f"{local_discord.mention()} not this guild")
    await local_discord.say(eve, general, f"{local_discord.mention()} not without the role")
    # the bot handles events in order: once this one is answered, the ones before it were decided
    await local_discord.say(ada, general, f"{local_discord.mention()} but here, yes")

    await answered(local_discord, general, "You said: but here, yes")
    assert [r.text for r in fake_brain.requests] == ["but here, yes"]
    assert local_discord.bot_messages(random) == [] and local_discord.bot_messages(other_general) == []
    assert contents(local_discord.bot_messages(general)) == ["You said: but here, yes"]
    assert not local_discord.typing_calls(random) and not local_discord.typing_calls(other_general)


async def test_in_a_reply_channel_every_message_is_answered(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    ask = local_discord.add_channel(guild, "ask-the-bot")
    ada = local_discord.add_user("ada")
    local_discord.join(guild, ada)
    await start_bot(fake_brain.url, reply_channels=[ask.id])

    await local_discord.say(ada, ask, "no mention needed")

    await answered(local_discord, ask, "You said: no mention needed")


async def test_a_reply_chain_gives_the_model_its_earlier_messages_oldest_first(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    ada, bob = local_discord.add_user("ada"), local_discord.add_user("bob")
    local_discord.join(guild, ada)
    local_discord.join(guild, bob)
    await start_bot(fake_brain.url)

    first = await local_discord.say(bob, general, "I think tabs beat spaces")
    await local_discord.say(ada, general, f"{local_discord.mention()} settle this", reply_to=first)
    answer = (await answered(local_discord, general, "You said: settle this"))[-1]
    # replying to the bot's answer continues the chain without a new mention
    await local_discord.say(bob, general, "so who is right?", reply_to=answer)
    await answered(local_discord, general, "You said: so who is right?")

    second = fake_brain.requests[1]
    assert [(c.author, c.text, c.from_bot) for c in second.context] == [
        ("bob", "I think tabs beat spaces", False),
        ("ada", "settle this", False),
        ("ownchat", "You said: settle this", True),
    ]
    assert [(c.author, c.text) for c in fake_brain.requests[0].context] == [("bob", "I think tabs beat spaces")]


async def test_in_a_thread_the_reply_goes_to_the_thread_with_its_messages_as_context(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    thread = local_discord.add_thread(general, "rust questions")
    ada, bob = local_discord.add_user("ada"), local_discord.add_user("bob")
    local_discord.join(guild, ada)
    local_discord.join(guild, bob)
    await start_bot(fake_brain.url, allowed_channels=[general.id])

    await local_discord.say(bob, thread, "borrow checker again")
    await local_discord.say(ada, thread, "it hates me")
    await local_discord.say(ada, thread, f"{local_discord.mention()} why?")

    await answered(local_discord, thread, "You said: why?")
    assert local_discord.bot_messages(general) == []
    request = fake_brain.requests[0]
    assert request.chat_id == str(thread.id)
    assert [(c.author, c.text) for c in request.context] == [
        ("bob", "borrow checker again"),
        ("ada", "it hates me"),
    ]


def one_delta_per_screen_update(local: LocalDiscord, channel):
    """A hook for the fake brain: each delta waits until the reader saw the text before it."""

    async def hook(request, index: int, sent: str) -> None:
        if sent:
            await eventually(lambda: contents(local.bot_messages(channel)) == [sent], f"{sent!r} on screen")

    return hook


async def test_a_reply_streams_into_one_message_by_edits(local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.reply_for = lambda r: "Once upon a time there was a tiny model."
    fake_brain.before_delta = one_delta_per_screen_update(local_discord, dm)
    await start_bot(fake_brain.url, edit_interval_s=0.0)

    await local_discord.say(ada, dm, "tell me a story")

    [reply] = await answered(local_discord, dm, "tiny model.")
    assert local_discord.edits[int(reply["id"])] == [
        "Once upon",
        "Once upon a time",
        "Once upon a time there was",
        "Once upon a time there was a tiny",
        "Once upon a time there was a tiny model.",
    ]


async def test_edits_are_throttled_to_the_configured_interval(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.reply_for = lambda r: "Once upon a time there was a tiny model."

    async def the_rest_once_the_first_words_show(request, index: int, sent: str) -> None:
        if index == 1:
            await eventually(lambda: contents(local_discord.bot_messages(dm)) == [sent], "the first words on screen")

    fake_brain.before_delta = the_rest_once_the_first_words_show
    await start_bot(fake_brain.url, edit_interval_s=3600.0)

    await local_discord.say(ada, dm, "tell me a story")

    [reply] = await answered(local_discord, dm, "tiny model.")
    # within the interval only the first words are posted; the end of the reply is the one edit
    assert local_discord.edits[int(reply["id"])] == ["Once upon", "Once upon a time there was a tiny model."]


async def test_a_reply_over_2000_characters_is_split_and_nothing_is_lost(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    paragraphs = [f"Paragraph {i}: " + " ".join(f"word{i}-{j}" for j in range(60)) for i in range(12)]
    story = "\n\n".join(paragraphs)
    assert len(story) > 5000
    fake_brain.reply_for = lambda r: story
    fake_brain.deltas = by_chars(97)
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "a long one please")

    replies = await answered(local_discord, dm, paragraphs[-1])
    assert len(replies) >= 3
    assert all(len(m["content"]) <= 2000 for m in replies)
    # cut between paragraphs, and nothing lost
    assert "\n\n".join(contents(replies)) == story


async def test_a_second_message_waits_for_the_first_reply_to_finish(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada, bob = local_discord.add_user("ada"), local_discord.add_user("bob")
    dm, bob_dm = local_discord.dm(ada), local_discord.dm(bob)
    release = asyncio.Event()
    fake_brain.reply_for = lambda r: f"Answer to {r.text}, in several pieces."

    async def hold_the_first(request, index: int, sent: str) -> None:
        if request.text == "first" and index == 1:
            await release.wait()

    fake_brain.before_delta = hold_the_first
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "first")
    await eventually(lambda: local_discord.bot_messages(dm), "the first words shown, the rest held")
    await local_discord.say(ada, dm, "second")
    # bob is not held up; once he is answered, ada's second message has been taken as far as it may go
    await local_discord.say(bob, bob_dm, "hi")
    await answered(local_discord, bob_dm, "Answer to hi, in several pieces.")
    assert "start second" not in fake_brain.events

    release.set()

    replies = await answered(local_discord, dm, "Answer to second, in several pieces.")
    assert contents(replies) == [
        "Answer to first, in several pieces.",
        "Answer to second, in several pieces.",
    ]
    events = fake_brain.events
    assert events.index("end first") < events.index("start second")


async def test_a_members_turns_in_another_channel_are_not_kept_waiting(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    ada = local_discord.add_user("ada")
    local_discord.join(guild, ada)
    dm = local_discord.dm(ada)
    release = asyncio.Event()

    async def hold_the_dm(request, index: int, sent: str) -> None:
        if request.chat_id == str(dm.id) and index == 1:
            await release.wait()

    fake_brain.before_delta = hold_the_dm
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "a long question")
    await eventually(lambda: local_discord.bot_messages(dm), "the first words shown in the DM, the rest held")
    await local_discord.say(ada, general, f"{local_discord.mention()} a quick one")

    await answered(local_discord, general, "You said: a quick one")
    assert contents(local_discord.bot_messages(dm)) == ["You said:"]
    release.set()
    await answered(local_discord, dm, "You said: a long question")


async def test_brain_down_gets_a_friendly_message_and_the_bot_recovers_when_it_is_back(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    await start_bot(fake_brain.url)
    await fake_brain.stop()

    await local_discord.say(ada, dm, "are you there?")

    [notice] = await eventually(lambda: local_discord.bot_messages(dm), "a notice in the DM")
    assert notice["content"] == UNAVAILABLE

    await fake_brain.start()
    await local_discord.say(ada, dm, "and now?")
    await answered(local_discord, dm, "You said: and now?")
    assert [r.text for r in fake_brain.requests] == ["and now?"]


async def test_a_chat_the_brain_could_not_take_yet_is_asked_again(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.fail_next("chat", Refuse(503, "not_ready", "The model is still loading."), times=2)
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "patience")

    replies = await answered(local_discord, dm, "You said: patience")
    assert contents(replies) == ["You said: patience"]
    assert fake_brain.events == ["refused patience", "refused patience", "start patience", "end patience"]


async def test_a_brain_too_slow_to_answer_gets_a_friendly_message(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.fail_next("chat", Silent())
    await start_bot(fake_brain.url, timeout_s=0.5)

    await local_discord.say(ada, dm, "slowly")

    replies = await answered(local_discord, dm, UNAVAILABLE)
    assert contents(replies) == [UNAVAILABLE]
    assert len(fake_brain.requests) == 1  # a request the brain may be working on is not sent twice


async def test_a_reply_cut_off_midway_keeps_what_was_shown_and_says_what_happened(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.reply_for = lambda r: "a long answer that the brain never finishes"
    fake_brain.before_delta = one_delta_per_screen_update(local_discord, dm)
    fake_brain.fail_next("chat", CutAfter(2))
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "go on")

    replies = await answered(local_discord, dm, UNAVAILABLE)
    assert contents(replies) == ["a long answer that …", UNAVAILABLE]
    assert [r.text for r in fake_brain.requests] == ["go on"]  # a reply that had begun is not asked twice
