"""Personas: a group's persona reaches every member without its author, and a member's own versions of a group
persona are hers (in her export) until her forget."""

from __future__ import annotations


async def test_every_member_of_a_group_gets_its_persona_without_its_author(store):
    await store.personas.set_chat("telegram", "g1", {"name": "pirate", "custom": False}, author="telegram:1")
    state = await store.chats.load_state("telegram:9", "telegram", "g1", True)
    assert state.chat_persona == {"name": "pirate", "custom": False}
    assert await store.personas.of_chat("telegram", "g1") == {"name": "pirate", "custom": False}


async def test_a_members_own_persona_is_kept_in_her_profile(store):
    await store.personas.set_user("telegram:1", {"name": "coach"})
    assert await store.personas.of_user("telegram:1") == {"name": "coach"}
    state = await store.chats.load_state("telegram:1", "telegram", "dm", False)
    assert state.user_persona == {"name": "coach"}


async def test_export_lists_a_group_persona_she_wrote_that_another_member_replaced(store) -> None:
    """Kept as a version while other members' kept turns name it: hers, so in her export, until her forget."""
    await store.personas.set_chat("telegram", "g1", {"name": "custom", "custom": True, "system_prompt": "QXOLD"},
                                  author="telegram:1")  # fmt: skip
    await store.personas.set_chat("telegram", "g1", {"name": "pirate"}, author="telegram:2")
    [persona] = await store.personas.authored("telegram:1")
    assert (persona.chat_id, persona.persona["system_prompt"], persona.in_use) == ("g1", "QXOLD", False)
    await store.forgetting.forget("telegram:1")
    assert await store.personas.authored("telegram:1") == []
    assert [p.persona for p in await store.personas.authored("telegram:2")] == [{"name": "pirate"}]
