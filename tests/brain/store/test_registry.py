"""The registry in Redis: a target's live record and history, and a target gone for good (a forgotten member's
adapter) leaving nothing that names it: not its history, the like counters an older version kept, or the
dashboard's run summaries."""

from __future__ import annotations

from brain.adapters import user_target
from brain.operator_records import RunSummary, TargetSummary
from brain.registry_records import Action, LiveAdapter, RegistryEvent
from brain.store import keys

LIVE = LiveAdapter(version=3, name="community@3", path="community/v3", promoted_at="2026-11-30T03:00:00+00:00")


def event(action: Action, version: int | None) -> RegistryEvent:
    return RegistryEvent(action=action, version=version, at="2026-11-30T03:00:00+00:00")


async def test_a_target_is_made_live_taken_out_and_its_history_kept_newest_first(store) -> None:
    await store.registry.set_record("community", LIVE, event("promote", 3))
    assert await store.registry.record("community") == LIVE
    assert await store.registry.records() == {"community": LIVE}
    await store.registry.delete_record("community", event=event("remove", None))
    assert await store.registry.record("community") is None
    assert [e.action for e in await store.registry.history("community")] == ["remove", "promote"]


async def test_removing_a_forgotten_members_adapter_drops_it_from_an_older_versions_like_counters(store) -> None:
    """What a forget does to her adapter (brain/adapters.py forget, the nightly run's purge): the like counters an
    older version kept (nothing counts with them now: like_counts counts kept ratings) lose its versions' fields."""
    ann = "telegram:5"
    for name in (f"{user_target(ann)}@1", f"{user_target(ann)}@2", "community@3", f"{user_target('telegram:6')}@1"):
        await store.r.hincrby(keys.LIKES, name, 2)
        await store.r.hincrby(keys.DISLIKES, name, 1)
    await store.registry.delete_record(user_target(ann), history=True)
    for counters in (keys.LIKES, keys.DISLIKES):
        assert set(await store.r.hkeys(counters)) == {"community@3", f"{user_target('telegram:6')}@1"}


async def test_an_adapter_directory_does_not_name_its_member_either() -> None:
    import hashlib

    assert user_target("telegram:48151623") != "user-" + hashlib.sha256(b"telegram:48151623").hexdigest()[:16]


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
        await store.dashboard.add_run_summary(summary)
    await store.dashboard.add_run_summary(RunSummary(run="r3", started_at="2026-12-02T03:00:00Z", status="finished"))

    await store.registry.delete_record(hers, history=True)

    summaries = await store.dashboard.run_summaries()
    assert [s.run for s in summaries] == ["r3", "r2", "r1"]
    assert hers not in str(await store.r.lrange(keys.RUN_SUMMARIES, 0, -1))
    for summary in summaries[1:]:
        assert [t.target for t in summary.targets] == ["community", other]
        assert summary.targets[0].reasons == ["[forgotten] was forgotten meanwhile"]
        assert summary.like_counts == {"community@1": (4, 1), f"{other}@1": (1, 1)}
