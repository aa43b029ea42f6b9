"""What a forget leaves behind names no one: tombstones and adapter names are keyed hashes (HMAC with the id key,
from OWNCHAT_ID_KEY or generated once and kept in Redis), tombstones of earlier versions (unkeyed SHA-256) are still
honoured, and what counters and the dashboard's run summaries said of the member's own adapter goes with her."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from brain.adapters import user_target
from brain.operator_records import RunSummary, TargetSummary
from brain.store import DISLIKES, ID_KEY, LIKES, RUN_SUMMARIES, TOMBSTONES, Store, connect, tombstone_member


@pytest.fixture
async def store(redis_server, monkeypatch):
    monkeypatch.delenv("OWNCHAT_ID_KEY", raising=False)
    s = Store(connect(redis_server.url))
    await s.load_id_key()
    yield s
    await s.close()


async def test_a_stolen_dump_does_not_name_a_forgotten_member_by_brute_force(store) -> None:
    await store.opt_in("telegram:48151623", "v1")
    await store.forget("telegram:48151623")
    dumped = set(await store.r.zrange(TOMBSTONES, 0, -1))
    # what took 3 s before: hash every id near it, as an attacker with the dump (and without the key) would
    guesses = {hashlib.sha256(f"telegram:{n}".encode()).hexdigest() for n in range(48_100_000, 48_200_000)}
    assert not dumped & guesses
    assert not any(member.startswith(hashlib.sha256(b"telegram:48151623").hexdigest()[:16]) for member in dumped)
    assert await store.forgotten_at("telegram:48151623") is not None, "the brain itself still knows her tombstone"


async def test_the_key_is_generated_once_shared_by_every_process_and_decides_the_hash(
    store, redis_server, monkeypatch
) -> None:
    others = [Store(connect(redis_server.url)) for _ in range(4)]
    try:
        await store.r.delete(ID_KEY)  # a fresh Redis: four processes start at once, SET NX lets one key win
        await asyncio.gather(*(other.load_id_key() for other in others))
        member = tombstone_member("telegram:1")
        for other in others:
            await other.load_id_key()
            assert tombstone_member("telegram:1") == member
        assert member != hashlib.sha256(b"telegram:1").hexdigest()
        monkeypatch.setenv("OWNCHAT_ID_KEY", "another operator's key")
        await store.load_id_key()
        assert tombstone_member("telegram:1") != member, "the hash depends on the key"
    finally:
        for other in others:
            await other.close()
        monkeypatch.delenv("OWNCHAT_ID_KEY")
        await store.load_id_key()


async def test_tombstones_of_earlier_versions_are_still_honoured(store) -> None:
    legacy = hashlib.sha256(b"telegram:77").hexdigest()
    await store.r.zadd(TOMBSTONES, {legacy: 1000})  # as an earlier version wrote it
    assert await store.forgotten_at("telegram:77") == 1000
    # an adapter trained before the key names its members by the unkeyed hash; a forget after it still finds them
    await store.forget("telegram:78")
    old_meta = hashlib.sha256(b"telegram:78").hexdigest()
    assert await store.tombstoned([old_meta, hashlib.sha256(b"telegram:79").hexdigest()]) == {old_meta}


async def test_removing_a_forgotten_members_adapter_drops_it_from_an_older_versions_like_counters(store) -> None:
    """What a forget does to her adapter (brain/adapters.py forget, the nightly run's purge): the like counters an
    older version kept (nothing counts with them now: like_counts counts kept ratings) lose its versions' fields."""
    ann = "telegram:5"
    for name in (f"{user_target(ann)}@1", f"{user_target(ann)}@2", "community@3", f"{user_target('telegram:6')}@1"):
        await store.r.hincrby(LIKES, name, 2)
        await store.r.hincrby(DISLIKES, name, 1)
    await store.delete_registry_record(user_target(ann), history=True)
    for counters in (LIKES, DISLIKES):
        assert set(await store.r.hkeys(counters)) == {"community@3", f"{user_target('telegram:6')}@1"}


async def test_an_adapter_directory_does_not_name_its_member_either(store) -> None:
    assert user_target("telegram:48151623") != "user-" + hashlib.sha256(b"telegram:48151623").hexdigest()[:16]


async def test_export_lists_a_group_persona_she_wrote_that_another_member_replaced(store) -> None:
    """Kept as a version while other members' kept turns name it: hers, so in her export, until her forget."""
    await store.set_chat_persona("telegram", "g1", {"name": "custom", "custom": True, "system_prompt": "QXOLD"},
                                 author="telegram:1")  # fmt: skip
    await store.set_chat_persona("telegram", "g1", {"name": "pirate"}, author="telegram:2")
    [persona] = await store.authored_personas("telegram:1")
    assert (persona.chat_id, persona.persona["system_prompt"], persona.in_use) == ("g1", "QXOLD", False)
    await store.forget("telegram:1")
    assert await store.authored_personas("telegram:1") == []
    assert [p.persona for p in await store.authored_personas("telegram:2")] == [{"name": "pirate"}]


async def test_the_dashboards_run_summaries_lose_a_forgotten_members_adapter(store) -> None:
    """As the reports on disk do (trainer/nightly/runs.py redact_reports): her target's row, its like counts and
    any other mention go; the rest of each run stays as it was."""
    hers, other = user_target("telegram:5"), user_target("telegram:6")
    targets = [
        TargetSummary(target="community", status="kept", reasons=[f"{hers} was forgotten meanwhile"]),
        TargetSummary(target=hers, status="promoted", version=2, turns=40),
        TargetSummary(target=other, status="skipped", turns=3),
    ]
    counts = {"community@1": (4, 1), f"{hers}@1": (2, 0), f"{other}@1": (1, 1)}
    for run in ("r1", "r2"):
        summary = RunSummary(run=run, started_at="2026-12-01T03:00:00Z", status="finished", targets=targets,
                             like_counts=counts)  # fmt: skip
        await store.add_run_summary(summary)
    await store.add_run_summary(RunSummary(run="r3", started_at="2026-12-02T03:00:00Z", status="finished"))

    await store.delete_registry_record(hers, history=True)

    summaries = await store.run_summaries()
    assert [s.run for s in summaries] == ["r3", "r2", "r1"]
    assert hers not in str(await store.r.lrange(RUN_SUMMARIES, 0, -1))
    for summary in summaries[1:]:
        assert [t.target for t in summary.targets] == ["community", other]
        assert summary.targets[0].reasons == ["[forgotten] was forgotten meanwhile"]
        assert summary.like_counts == {"community@1": (4, 1), f"{other}@1": (1, 1)}
