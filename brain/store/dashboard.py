"""The operator's dashboard (typed in brain/operator_records.py): what nightly runs left, what operators did through
the dashboard, and the nightly schedule's pause."""

from __future__ import annotations

import logging
from typing import Any

from brain.operator_records import AuditRecord, RunSummary, SchedulePause
from brain.registry_records import RecordFormatError
from brain.store import keys, scripts

log = logging.getLogger("brain.store")
RUN_SUMMARIES_KEPT = 60
AUDIT_KEPT = 1000
# what a run summary says instead of a target gone for good (a forgotten member's), as the reports on disk do
FORGOTTEN_TARGET = "[forgotten]"


class Dashboard:
    """``oc:runs`` and ``oc:audit`` (newest first, bounded) and ``oc:trainer:paused``."""

    def __init__(self, client: Any):
        self.r = client
        self._replace_items = scripts.register(client, "replace_items")

    async def add_run_summary(self, summary: RunSummary) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(keys.RUN_SUMMARIES, summary.dumps())
        pipe.ltrim(keys.RUN_SUMMARIES, 0, RUN_SUMMARIES_KEPT - 1)
        await pipe.execute()

    async def run_summaries(self, count: int = RUN_SUMMARIES_KEPT) -> list[RunSummary]:
        """The latest runs' summaries, newest first; one of another format is skipped (and said in the log)."""
        summaries = []
        for raw in await self.r.lrange(keys.RUN_SUMMARIES, 0, count - 1):
            try:
                summaries.append(RunSummary.loads(raw))
            except RecordFormatError as error:
                log.error("a run summary was skipped: %s", error)
        return summaries

    async def unname(self, target: str) -> None:
        """Take a target gone for good out of the run summaries the dashboard reads, as the nightly run takes it
        out of its reports on disk (trainer/nightly/runs.py redact_reports)."""
        pairs: list[str] = []
        for raw in await self.r.lrange(keys.RUN_SUMMARIES, 0, -1):
            if target not in raw:
                continue
            try:
                summary = RunSummary.loads(raw)
            except RecordFormatError:
                pairs += [raw, raw.replace(target, FORGOTTEN_TARGET)]
                continue
            kept = summary.model_copy(
                update={
                    "targets": [t for t in summary.targets if t.target != target],
                    "like_counts": {k: v for k, v in summary.like_counts.items() if not k.startswith(f"{target}@")},
                }
            )
            # anything else that names it, such as another target's reason
            pairs += [raw, kept.dumps().replace(target, FORGOTTEN_TARGET)]
        if pairs:
            await self._replace_items(keys=[keys.RUN_SUMMARIES], args=pairs)

    async def add_audit(self, record: AuditRecord) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(keys.AUDIT, record.dumps())
        pipe.ltrim(keys.AUDIT, 0, AUDIT_KEPT - 1)
        await pipe.execute()

    async def audit_log(self, count: int = 50) -> list[AuditRecord]:
        records = []
        for raw in await self.r.lrange(keys.AUDIT, 0, count - 1):
            try:
                records.append(AuditRecord.loads(raw))
            except RecordFormatError as error:
                log.error("an audit record was skipped: %s", error)
        return records

    async def set_schedule_pause(self, pause: SchedulePause | None) -> None:
        """Pause the nightly schedule (``trainer schedule`` skips its runs), or resume it with None."""
        if pause is None:
            await self.r.delete(keys.SCHEDULE_PAUSED)
        else:
            await self.r.set(keys.SCHEDULE_PAUSED, pause.dumps())

    async def schedule_pause(self) -> SchedulePause | None:
        raw = await self.r.get(keys.SCHEDULE_PAUSED)
        return SchedulePause.loads(raw) if raw else None
