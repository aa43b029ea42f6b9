"""Tombstones name no one: a stolen dump does not give a forgotten member's id back, and tombstones of earlier
versions (unkeyed SHA-256) are still honoured."""

from __future__ import annotations

import hashlib

from brain.store import keys
from brain.store.ids import LEGACY_PREFIX, tombstone_member


async def test_a_stolen_dump_does_not_name_a_forgotten_member_by_brute_force(keyless_store) -> None:
    store = keyless_store
    await store.profiles.opt_in("telegram:48151623", "v1")
    await store.forgetting.forget("telegram:48151623")
    dumped = set(await store.r.zrange(keys.TOMBSTONES, 0, -1))
    # what took 3 s before: hash every id near it, as an attacker with the dump (and without the key) would
    guesses = {hashlib.sha256(f"telegram:{n}".encode()).hexdigest() for n in range(48_100_000, 48_200_000)}
    assert not dumped & guesses
    assert not any(member.startswith(hashlib.sha256(b"telegram:48151623").hexdigest()[:16]) for member in dumped)
    assert await store.tombstones.forgotten_at("telegram:48151623") is not None, (
        "the brain itself still knows her tombstone"
    )
    assert tombstone_member("telegram:48151623") in await store.tombstones.members()


async def test_tombstones_of_earlier_versions_are_still_honoured(store) -> None:
    legacy = hashlib.sha256(b"telegram:77").hexdigest()
    await store.r.zadd(keys.TOMBSTONES, {legacy: 1000})  # as an earlier version wrote it
    assert await store.tombstones.forgotten_at("telegram:77") == 1000
    # an adapter trained before the key names its members by the unkeyed hash; a forget after it still finds them
    await store.forgetting.forget("telegram:78")
    old_meta = hashlib.sha256(b"telegram:78").hexdigest()
    assert await store.tombstones.tombstoned([old_meta, hashlib.sha256(b"telegram:79").hexdigest()]) == {old_meta}


async def test_a_legacy_form_written_among_the_tombstones_by_an_earlier_version_is_still_found(store) -> None:
    # before the keyed forms of unkeyed hashes had a set of their own, a forget wrote them into oc:tombstones
    old_meta = hashlib.sha256(b"telegram:80").hexdigest()
    await store.r.zadd(keys.TOMBSTONES, {tombstone_member(LEGACY_PREFIX + old_meta): 1000})
    assert await store.tombstones.tombstoned([old_meta]) == {old_meta}
