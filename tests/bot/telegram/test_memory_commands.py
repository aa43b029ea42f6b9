"""/remember and /memory on Telegram, through the real Application and a real brain (tiny model, real Redis)."""

from __future__ import annotations

from tests.bot.telegram.test_commands import Person, direct
from tests.support.telegram_api import TelegramApiServer


async def test_a_member_pins_lists_and_forgets_facts_in_private(telegram: TelegramApiServer, brain, start_bot):
    await start_bot(brain_url=brain.url, api_key=brain.api_key)
    ana = direct(telegram)

    assert "No facts about you here yet" in (await ana.says("/memory")).text
    pinned = await ana.says("/remember I'm vegetarian.")
    assert pinned.text.startswith("I'll keep this in mind") and '"I\'m vegetarian."' in pinned.text
    await ana.says("/remember My cat is called Pickle.")
    await ana.says("/remember I   live in Porto.")

    listing = (await ana.says("/memory")).text
    assert "1. I'm vegetarian. (you pinned it)" in listing
    assert "2. My cat is called Pickle. (you pinned it)" in listing and "3. I live in Porto." in listing

    assert (await ana.says("/memory forget 2")).text == 'Forgotten: "My cat is called Pickle."'
    assert "Pickle" not in (await ana.says("/memory")).text
    assert "Which one?" in (await ana.says("/memory forget 9")).text
    assert (await ana.says("/memory clear")).text == "Done: I forgot the 2 facts I kept about you."
    assert "No facts about you here yet" in (await ana.says("/memory")).text
    assert "Tell me what to keep in mind" in (await ana.says("/remember")).text


async def test_in_a_group_memory_lists_only_what_was_said_in_that_group(telegram: TelegramApiServer, brain, start_bot):
    await start_bot(brain_url=brain.url, api_key=brain.api_key)
    ana = direct(telegram)
    group = telegram.group("Book club", owner=ana.user)
    in_group = Person(telegram, ana.user, group)

    await ana.says("/remember My secret hobby is CANARY-PRIVATE.")
    answer = await in_group.says("/remember I lead the book club.")
    assert "in this group and when we talk in private" in answer.text

    listing = (await in_group.says("/memory")).text
    assert "1. I lead the book club." in listing and "CANARY-PRIVATE" not in listing
    assert (await in_group.says("/memory clear")).text == "Done: I forgot the 1 fact I kept from this group."
    assert "CANARY-PRIVATE" in (await ana.says("/memory")).text  # the private fact stays
