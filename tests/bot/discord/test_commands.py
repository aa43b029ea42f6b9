"""Slash commands: synced on start, preset completion, operator-only /stats, buttons, and where they work."""

from __future__ import annotations

from tests.support.discord_api import EPHEMERAL, LocalDiscord
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain


async def test_the_slash_commands_are_synced_on_start_with_their_descriptions(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    await start_bot(fake_brain.url)

    synced = {c["name"]: c for c in local_discord.commands}
    assert set(synced) == {
        "persona", "optin", "optout", "compare", "forget", "reset", "remember", "memory", "privacy", "help", "stats",
        "retry", "Answer again",
    }  # fmt: skip
    assert synced["Answer again"]["type"] == 3  # on a message: Apps > Answer again
    assert synced["forget"]["description"] == "Delete everything I keep about you (asks first)"
    assert [o["name"] for o in synced["persona"]["options"]] == ["name", "custom"]
    assert synced["persona"]["options"][0]["autocomplete"] is True


async def test_help_lists_the_commands_to_the_caller_only(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    await start_bot(fake_brain.url)

    ask = await local_discord.slash(ada, local_discord.dm(ada), "help")

    [answer] = await local_discord.wait_for_answers(ask)
    assert answer["flags"] & EPHEMERAL
    assert "/persona" in answer["content"] and "/forget" in answer["content"]
    assert "/stats" not in answer["content"]


async def test_persona_names_are_completed_from_the_brains_presets(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    await start_bot(fake_brain.url)

    typing = await local_discord.autocomplete(ada, local_discord.dm(ada), "persona", "name", "pir")

    [callback] = await eventually(lambda: typing.callbacks, "the choices offered")
    assert callback["type"] == 8
    assert callback["data"]["choices"] == [{"name": "pirate: Talks like a pirate", "value": "pirate"}]


async def test_stats_answers_operators_and_does_nothing_for_anyone_else(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ops, ada = local_discord.add_user("ops"), local_discord.add_user("ada")
    await start_bot(fake_brain.url, operators=[ops.id])

    curious = await local_discord.slash(ada, local_discord.dm(ada), "stats")
    [nothing] = await local_discord.wait_for_answers(curious)
    assert nothing["content"] == "That command isn't available." and nothing["flags"] & EPHEMERAL
    assert fake_brain.asked["stats"] == 0

    asked = await local_discord.slash(ops, local_discord.dm(ops), "stats")
    [figures] = await local_discord.wait_for_answers(asked)
    assert "Model: fake" in figures["content"] and "Replies served: 0" in figures["content"]
    assert fake_brain.asked["stats"] == 1


async def test_commands_outside_the_allowed_channels_do_not_reach_the_brain(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    guild = local_discord.add_guild("club")
    general, random = local_discord.add_channel(guild, "general"), local_discord.add_channel(guild, "random")
    ada = local_discord.add_user("ada")
    local_discord.join(guild, ada)
    await start_bot(fake_brain.url, allowed_channels=[general.id])

    ask = await local_discord.slash(ada, random, "persona", name="pirate")

    [answer] = await local_discord.wait_for_answers(ask)
    assert answer["content"] == "I'm not active in this channel."
    assert answer["flags"] & EPHEMERAL, "nobody else in the channel sees anything"
    assert fake_brain.asked["set_persona"] == 0


async def test_a_confirmation_button_still_works_after_the_bot_restarts(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    first = await start_bot(fake_brain.url)
    ask = await local_discord.slash(ada, dm, "forget")
    [confirm] = await local_discord.wait_for_answers(ask)
    await first.close()

    await start_bot(fake_brain.url)
    await local_discord.click(ada, int(confirm["id"]), "Yes, forget me")

    await eventually(lambda: confirm["content"].startswith("Done"), "the confirmation answered")
    assert confirm["content"] == "Done: I forgot you (0 records deleted)."
    assert fake_brain.forgotten == [f"discord:{ada.id}"]


async def test_a_command_while_the_brain_is_down_gets_a_friendly_message(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    ada = local_discord.add_user("ada")
    await start_bot(fake_brain.url)
    await fake_brain.stop()

    ask = await local_discord.slash(ada, local_discord.dm(ada), "persona", name="pirate")

    [answer] = await local_discord.wait_for_answers(ask)
    assert answer["content"] == "I can't think right now: my brain is unavailable. Please try again in a moment."


async def test_a_sharded_bot_answers_like_a_single_one(local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    ada = local_discord.add_user("ada")
    local_discord.join(guild, ada)
    # 0 shards: as many as the gateway advises (the local one advises 1)
    bot = await start_bot(fake_brain.url, shard_count=0)

    await local_discord.say(ada, general, f"{local_discord.mention()} hi from a shard")

    await eventually(
        lambda: [m["content"] for m in local_discord.bot_messages(general)] == ["You said: hi from a shard"],
        "the answer in #general",
    )
    assert bot.shard_count == 1
    assert local_discord.identifies[-1]["shard"] == [0, 1]
