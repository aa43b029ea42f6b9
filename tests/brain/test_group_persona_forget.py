"""/forget through the brain's API reaches the group personas the user set, and only those."""

from __future__ import annotations

import redis

from bot.client import BrainClient
from brain.api_models import ChatKind, PersonaSet, UserRef

ANN, BOB = UserRef(platform="telegram", user_id="501"), UserRef(platform="telegram", user_id="502")


def in_group(who: UserRef, chat_id: str, **choice: str) -> PersonaSet:
    return PersonaSet(platform=who.platform, user_id=who.user_id, chat_id=chat_id, chat_kind=ChatKind.group, **choice)


async def test_forget_deletes_the_group_personas_the_user_wrote_and_leaves_the_others(brain) -> None:
    async with BrainClient(brain.url, brain.api_key, retries=0) as client:
        await client.set_persona(in_group(ANN, "g1", custom="You speak like ANN-CANARY, a lighthouse keeper."))
        await client.set_persona(in_group(BOB, "g2", custom="You are a terse librarian."))
        await client.set_persona(in_group(ANN, "g3", custom="You are ANN-CANARY's cat."))
        await client.set_persona(in_group(BOB, "g3", preset="pirate"))  # Bob's choice replaced Ann's in g3

        await client.forget(ANN)

        g1, g2, g3 = [await client.get_persona(BOB, chat, "group") for chat in ("g1", "g2", "g3")]
    assert not g1.custom and g1.name == brain.settings.brain.default_persona, "Ann's persona of g1 went with her"
    assert g2.system_prompt == "You are a terse librarian."
    assert g3.name == "pirate"
    with redis.Redis.from_url(brain.redis.url, decode_responses=True) as r:
        values = [str(r.get(key)) for key in r.scan_iter("oc:chatpersona:*")]
        assert not any("ANN-CANARY" in value or "telegram:501" in value for value in values)
        assert not [key for key in r.scan_iter("*") if "telegram:501" in key]
