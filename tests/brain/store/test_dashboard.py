"""What the operator's dashboard keeps: run summaries and its audit log, newest first and bounded, and the nightly
schedule's pause."""

from __future__ import annotations

from brain.operator_records import AuditRecord, RunSummary, SchedulePause
from brain.store import keys
from brain.store.dashboard import RUN_SUMMARIES_KEPT


async def test_run_summaries_are_kept_newest_first_and_bounded(store):
    for n in range(RUN_SUMMARIES_KEPT + 2):
        await store.dashboard.add_run_summary(
            RunSummary(run=f"r{n}", started_at="2026-12-01T03:00:00Z", status="finished")
        )
    summaries = await store.dashboard.run_summaries()
    assert len(summaries) == RUN_SUMMARIES_KEPT
    assert summaries[0].run == f"r{RUN_SUMMARIES_KEPT + 1}" and summaries[-1].run == "r2"


async def test_a_summary_of_another_format_is_skipped_not_fatal(store):
    await store.dashboard.add_run_summary(RunSummary(run="r1", started_at="2026-12-01T03:00:00Z", status="finished"))
    await store.r.lpush(keys.RUN_SUMMARIES, '{"format": 999}')
    assert [s.run for s in await store.dashboard.run_summaries()] == ["r1"]


async def test_the_audit_log_and_the_schedules_pause(store):
    await store.dashboard.add_audit(AuditRecord(action="pause", at="2026-12-01T03:00:00Z", ok=True, detail="paused"))
    await store.dashboard.add_audit(AuditRecord(action="resume", at="2026-12-01T04:00:00Z", ok=True, detail="resumed"))
    assert [r.action for r in await store.dashboard.audit_log()] == ["resume", "pause"]

    assert await store.dashboard.schedule_pause() is None
    pause = SchedulePause(at="2026-12-01T03:00:00Z", reason="a release")
    await store.dashboard.set_schedule_pause(pause)
    assert await store.dashboard.schedule_pause() == pause
    await store.dashboard.set_schedule_pause(None)
    assert await store.dashboard.schedule_pause() is None
