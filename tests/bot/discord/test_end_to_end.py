"""The Discord bot against a real brain (tiny model, real redis-server): what the user is told is true."""

from __future__ import annotations

import re

from bot.client import BrainClient
from brain.api_models import MemoryView, UserRef
from tests.support.discord_api import EPHEMERAL, MANAGE_CHANNELS, LocalDiscord
from tests.support.eventually import eventually


async def test_a_user_opts_in_chats_sets_a_persona_and_is_forgotten(
    local_discord: LocalDiscord, brain, brain_api: BrainClient, start_bot
):
    ada, eve = local_discord.add_user("ada"), local_discord.add_user("eve")
    dm = local_discord.dm(ada)
    me = UserRef(platform="discord", user_id=str(ada.id))
    await start_bot(brain.url, api_key=brain.api_key)

    # /optin says what is kept before it records anything
    ask = await local_discord.slash(ada, dm, "optin")
    [prompt] = await local_discord.wait_for_answers(ask)
    notice = await brain_api.privacy()
    assert notice.text in prompt["content"]
    assert prompt["flags"] & EPHEMERAL, "only ada sees her consent prompt"
    assert not (await brain_api.consent(me)).opted_in

    press = await local_discord.click(ada, int(prompt["id"]), "Yes, opt me in")
    await eventually(
        # the notice itself speaks of being "opted in": wait for the confirmation's own words
        lambda: press.callbacks and "consent version" in local_discord.messages[int(prompt["id"])]["content"],
        "the consent prompt answered",
    )
    told = local_discord.messages[int(prompt["id"])]["content"]
    consent = await brain_api.consent(me)
    assert consent.opted_in and f"consent version {consent.version}" in told
    assert local_discord.messages[int(prompt["id"])]["components"] == [], "the button is gone once used"

    # a chat turn: what ada reads is what the brain remembers and logs
    await local_discord.say(ada, dm, "What is the capital of France?")
    memory = await _wait_for_turns(brain_api, me, str(dm.id), 2)
    assert memory.turns[0].text == "What is the capital of France?"
    reply = memory.turns[1].text.strip() or "…"
    await eventually(
        lambda: " ".join(m["content"] for m in local_discord.bot_messages(dm)) == reply, f"the reply {reply!r} shown"
    )
    export = await brain_api.export(me)
    assert [entry.user_text for entry in export.log] == ["What is the capital of France?"]

    # /persona pirate: the brain now answers ada as the pirate
    pick = await local_discord.slash(ada, dm, "persona", name="pirate")
    [picked] = await local_discord.wait_for_answers(pick)
    assert picked["content"].startswith("Persona set for you: pirate.")
    assert (await brain_api.get_persona(me, str(dm.id), "direct")).name == "pirate"

    recall = await local_discord.slash(ada, dm, "memory")
    [remembered] = await local_discord.wait_for_answers(recall)
    assert "Persona: pirate" in remembered["content"]
    assert "Learning from our chats: yes" in remembered["content"]
    assert "Recent turns remembered here: 2" in remembered["content"]

    # /forget asks first; nobody else can confirm for ada
    forget = await local_discord.slash(ada, dm, "forget")
    [confirm] = await local_discord.wait_for_answers(forget)
    assert "Yes, forget me" in str(confirm["components"])
    assert (await brain_api.export(me)).log, "nothing is deleted before ada confirms"

    stranger = await local_discord.click(eve, int(confirm["id"]), "Yes, forget me")
    [refused] = await local_discord.wait_for_answers(stranger)
    assert refused["content"] == "These buttons are for the person who asked."
    assert (await brain_api.export(me)).log

    press = await local_discord.click(ada, int(confirm["id"]), "Yes, forget me")
    await eventually(
        lambda: local_discord.messages[int(confirm["id"])]["content"].startswith("Done"), "the confirmation answered"
    )
    told = local_discord.messages[int(confirm["id"])]["content"]
    deleted = int(re.search(r"\((\d+) records deleted\)", told).group(1))
    assert deleted > 0
    export = await brain_api.export(me)
    assert (export.profile, export.chats, export.log) == ({}, {}, [])
    assert not (await brain_api.consent(me)).opted_in
    assert (await brain_api.get_persona(me, str(dm.id), "direct")).name != "pirate"


async def test_in_a_guild_only_channel_managers_change_the_persona_of_the_channel(
    local_discord: LocalDiscord, brain, brain_api: BrainClient, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    mods = local_discord.add_role(guild, "mods", MANAGE_CHANNELS)
    ada, bob = local_discord.add_user("ada"), local_discord.add_user("bob")
    local_discord.join(guild, ada, mods)
    local_discord.join(guild, bob)
    await start_bot(brain.url, api_key=brain.api_key)

    attempt = await local_discord.slash(bob, general, "persona", name="pirate")
    [refused] = await local_discord.wait_for_answers(attempt)
    assert refused["content"] == "Only this chat's admins can change my persona here."

    pick = await local_discord.slash(ada, general, "persona", name="pirate")
    [picked] = await local_discord.wait_for_answers(pick)
    assert picked["content"].startswith("Persona set in this chat: pirate.")
    assert not picked["flags"] & EPHEMERAL, "the whole channel sees who the bot is now"
    bob_view = UserRef(platform="discord", user_id=str(bob.id))
    assert (await brain_api.get_persona(bob_view, str(general.id), "group")).name == "pirate"

    own = await local_discord.slash(ada, general, "persona", custom="You are a patient chess coach.")
    [told] = await local_discord.wait_for_answers(own)
    state = await brain_api.get_persona(bob_view, str(general.id), "group")
    assert told["content"] == f"Persona set in this chat: {state.name}."
    assert state.custom and "patient chess coach" in state.system_prompt


async def test_persona_without_a_name_lists_the_presets_as_buttons_that_pick_one(
    local_discord: LocalDiscord, brain, brain_api: BrainClient, start_bot
):
    guild = local_discord.add_guild("club")
    general = local_discord.add_channel(guild, "general")
    mods = local_discord.add_role(guild, "mods", MANAGE_CHANNELS)
    ada = local_discord.add_user("ada")
    local_discord.join(guild, ada, mods)
    await start_bot(brain.url, api_key=brain.api_key)

    ask = await local_discord.slash(ada, general, "persona")
    [menu] = await local_discord.wait_for_answers(ask)
    presets = await brain_api.personas()
    assert menu["flags"] & EPHEMERAL
    assert all(f"- {p.name}: {p.description}" in menu["content"] for p in presets)

    await local_discord.click(ada, int(menu["id"]), "pirate")

    await eventually(lambda: menu["content"].startswith("Persona set"), "the menu answered")
    pirate = await brain_api.persona("pirate")
    assert menu["content"] == f"Persona set in this chat: pirate.\n{pirate.greeting}"
    me = UserRef(platform="discord", user_id=str(ada.id))
    assert (await brain_api.get_persona(me, str(general.id), "group")).name == "pirate"


async def _wait_for_turns(brain_api: BrainClient, user: UserRef, chat_id: str, count: int) -> MemoryView:
    """The brain's memory of a chat once it holds `count` turns (it stores them as the reply completes)."""

    async def remembered() -> MemoryView | None:
        memory = await brain_api.memory(user, chat_id)
        return memory if len(memory.turns) >= count else None

    return await eventually(remembered, f"the brain remembering {count} turns")
