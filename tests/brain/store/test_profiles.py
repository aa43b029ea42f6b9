"""A member's profile: consent with its version and time, the agreement to comparisons that lasts one opt-in, and
the adapter version that never brings a forgotten member's profile back."""

from __future__ import annotations

import asyncio

from brain.store.profiles import agreed_to_compare
from tests.brain.store.helpers import say


async def test_opt_in_records_version_and_time(store):
    at = await store.profiles.opt_in("discord:9", "2026-11")
    profile = await store.profiles.get("discord:9")
    assert profile["consent"] == "in" and profile["consent_version"] == "2026-11"
    assert int(profile["consent_at"]) == at


async def test_an_agreement_to_compare_lasts_until_the_next_opt_out(store):
    user = "telegram:3"
    assert not await store.profiles.agree_to_compare(user, True), "only an opted-in member can agree"
    await store.profiles.opt_in(user, "v1")
    assert await store.profiles.agree_to_compare(user, True)
    assert agreed_to_compare(await store.profiles.get(user))
    await store.profiles.opt_out(user, delete_logs=False)
    await asyncio.sleep(0.01)  # the next opt-in is at another millisecond
    await store.profiles.opt_in(user, "v1")
    assert not agreed_to_compare(await store.profiles.get(user)), "a later opt-in asks again"


async def test_the_adapter_version_is_set_only_on_a_standing_profile(store):
    user = "telegram:4"
    assert not await store.profiles.set_adapter_version(user, 3)
    assert await store.profiles.get(user) == {}, "no profile was made for a member who has none"
    await say(store, user, "hello")
    assert await store.profiles.set_adapter_version(user, 3)
    assert (await store.profiles.get(user))["adapter_version"] == "3"
    assert await store.profiles.set_adapter_version(user, None)
    assert "adapter_version" not in await store.profiles.get(user)
