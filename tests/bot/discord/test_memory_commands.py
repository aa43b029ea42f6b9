"""/remember and /memory on Discord, through discord.py itself and a real brain (tiny model, real Redis)."""

from __future__ import annotations

from tests.support.discord_api import EPHEMERAL, LocalDiscord


async def answer(local_discord: LocalDiscord, user, channel, command: str, **options) -> str:
    [reply] = await local_discord.wait_for_answers(await local_discord.slash(user, channel, command, **options))
    assert reply["flags"] & EPHEMERAL, "what the bot keeps about someone is shown to them only"
    return reply["content"]


async def test_a_member_pins_lists_and_forgets_facts(local_discord: LocalDiscord, brain, start_bot):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    ada = local_discord.add_user("ada")
    local_discord.join(guild, ada)
    dm = local_discord.dm(ada)
    await start_bot(brain.url, api_key=brain.api_key)

    options = {c["name"]: [o["name"] for o in c.get("options", [])] for c in local_discord.commands}
    assert options["remember"] == ["fact"] and options["memory"] == ["forget", "clear"]

    said = await answer(local_discord, ada, dm, "remember", fact="My cat is called Pickle.")
    assert said.startswith("I'll keep this in mind") and "My cat is called Pickle." in said
    await answer(local_discord, ada, dm, "remember", fact="I'm vegetarian.")
    await answer(local_discord, ada, general, "remember", fact="I run the club's quiz night.")

    # in the server only what was said there; in private all of it, numbered for /memory forget
    in_server = await answer(local_discord, ada, general, "memory")
    assert "1. I run the club's quiz night." in in_server and "Pickle" not in in_server
    listing = await answer(local_discord, ada, dm, "memory")
    assert "1. My cat is called Pickle. (you pinned it)" in listing
    assert "3. I run the club's quiz night. (you pinned it, in a group)" in listing

    assert await answer(local_discord, ada, dm, "memory", forget=1) == 'Forgotten: "My cat is called Pickle."'
    assert await answer(local_discord, ada, general, "memory", clear=True) == (
        "Done: I forgot the 1 fact I kept from this group."
    )
    listing = await answer(local_discord, ada, dm, "memory")
    assert "1. I'm vegetarian." in listing and "Pickle" not in listing and "quiz" not in listing
