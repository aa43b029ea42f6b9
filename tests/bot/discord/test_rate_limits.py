"""Discord's rate limits (429 with `retry_after`, or a bucket used up) hold a channel: the bot honours every wait,
sends nothing there meanwhile (not even "typing…"), and the first edit after a wait shows the newest text."""

from __future__ import annotations

from tests.bot.discord.test_messages import contents
from tests.support.discord_api import Call, LocalDiscord
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain, by_words

WORDS = " ".join(f"w{i}" for i in range(40))
EDITS = r"/channels/\d+/messages/\d+"


def edits_of(local: LocalDiscord, message: dict) -> list[Call]:
    return [c for c in local.calls if c.method == "PATCH" and c.path.endswith(f"/messages/{message['id']}")]


async def test_after_each_wait_the_next_edit_carries_the_newest_text(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    fake_brain.reply_for = lambda r: WORDS
    fake_brain.deltas = by_words(1)
    wait_s = 1.0  # long enough for the rest of the reply to come during the first wait

    async def stream_fast_once_discord_refuses(request, index: int, sent: str) -> None:
        if index == 1:
            await eventually(lambda: contents(local_discord.bot_messages(dm)) == ["w0"], "the first word on screen")
        if index == 2:
            await eventually(lambda: [c for c in local_discord.calls if c.status == 429], "Discord refusing an edit")

    fake_brain.before_delta = stream_fast_once_discord_refuses
    local_discord.fail_next("PATCH", EDITS, retry_after=wait_s, times=3)
    await start_bot(fake_brain.url)

    await local_discord.say(ada, dm, "go")

    await eventually(lambda: contents(local_discord.bot_messages(dm)) == [WORDS], "the whole reply")
    [reply] = local_discord.bot_messages(dm)
    edits = edits_of(local_discord, reply)
    # three refusals in a row, each waited out; every try after a wait carried the whole reply, so one edit did
    assert [c.status for c in edits] == [429, 429, 429, 200]
    assert [c.body["content"] for c in edits] == ["w0 w1"] + [WORDS] * 3
    assert all(after.at - refused.at >= wait_s for refused, after in zip(edits, edits[1:], strict=False))
    assert local_discord.edits[int(reply["id"])] == ["w0", WORDS]


async def test_nothing_goes_to_a_channel_inside_a_wait_not_even_typing(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    ada, bob = local_discord.add_user("ada"), local_discord.add_user("bob")
    local_discord.join(guild, ada)
    local_discord.join(guild, bob)
    fake_brain.reply_for = lambda r: f"Answer to {r.text}, in a few words"
    wait_s = 1.5

    async def adas_reply_one_update_at_a_time(request, index: int, sent: str) -> None:
        if sent and request.user_id == str(ada.id):
            shown = lambda: [m for m in local_discord.bot_messages(general) if m["content"] == sent]  # noqa: E731
            await eventually(shown, f"{sent!r} on screen")

    fake_brain.before_delta = adas_reply_one_update_at_a_time
    local_discord.fail_next("PATCH", EDITS, retry_after=wait_s)
    bot = await start_bot(fake_brain.url)

    await local_discord.say(ada, general, f"{local_discord.mention()} hello all")
    [refused] = await eventually(lambda: [c for c in local_discord.calls if c.status == 429], "Ada's edit refused")
    await eventually(lambda: bot.waits.in_wait(general.id), "the bot holding the channel")
    await local_discord.say(bob, general, f"{local_discord.mention()} quick one")

    await eventually(
        lambda: (
            sorted(contents(local_discord.bot_messages(general)))
            == ["Answer to hello all, in a few words", "Answer to quick one, in a few words"]
        ),
        "both answers in full",
    )
    to_general = [c for c in local_discord.calls if c.path.startswith(f"/channels/{general.id}/")]
    during_wait = [f"{c.method} {c.path}" for c in to_general if refused.at < c.at < refused.at + wait_s]
    assert during_wait == [], "nothing at all went to the channel while it waited, not even a typing indicator"
    assert local_discord.typing_calls(general)[0].at < refused.at, "Ada saw the bot typing before the wait"
    [bobs] = [m for m in local_discord.bot_messages(general) if "quick one" in m["content"]]
    assert local_discord.edits[int(bobs["id"])] == ["Answer to quick one, in a few words"], "one post, all of it"


async def test_a_used_up_bucket_is_waited_out_before_the_newest_text_is_drawn(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    ada, bob = local_discord.add_user("ada"), local_discord.add_user("bob")
    local_discord.join(guild, ada)
    local_discord.join(guild, bob)
    replies = {str(ada.id): "a0 a1 a2 a3", str(bob.id): WORDS}
    fake_brain.reply_for = lambda r: replies[r.user_id]
    fake_brain.deltas = by_words(1)
    bucket_s = 1.0
    # Ada's first edit uses up the channel's edit bucket: discord.py would hold Bob's next edit back until it
    # resets, then send the text it had when it asked
    local_discord.use_up_bucket("PATCH", EDITS, reset_after=bucket_s)
    used_up: list[Call] = []

    def on_screen(text: str) -> bool:
        return text in contents(local_discord.bot_messages(general))

    async def interleave(request, index: int, sent: str) -> None:
        if request.user_id == str(bob.id) and index == 1:
            await eventually(lambda: on_screen("w0"), "Bob's first word on screen")
            await local_discord.say(ada, general, f"{local_discord.mention()} count")
            used_up.extend(await eventually(lambda: [c for c in local_discord.calls if c.method == "PATCH"], "an edit"))
        if request.user_id == str(bob.id) and index == 2:
            await eventually(lambda: bot.waits.in_wait(general.id), "the bot holding the channel")
        if request.user_id == str(ada.id) and index == 1:
            await eventually(lambda: on_screen("a0"), "Ada's first word on screen")

    fake_brain.before_delta = interleave
    bot = await start_bot(fake_brain.url)

    await local_discord.say(bob, general, f"{local_discord.mention()} go")

    await eventually(lambda: on_screen(WORDS) and on_screen("a0 a1 a2 a3"), "both replies in full")
    [bobs] = [m for m in local_discord.bot_messages(general) if m["content"] == WORDS]
    edits = edits_of(local_discord, bobs)
    assert [c.status for c in edits] == [200] and edits[0].at >= used_up[0].at + bucket_s
    assert local_discord.edits[int(bobs["id"])] == ["w0", WORDS], "the first edit after the wait shows all of it"
