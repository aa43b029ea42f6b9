"""Memory's background jobs: the work no member waits for (summary folds, fact extraction), started once a reply
is stored and never awaited by one.

One pattern for all of it: a job is a coroutine started here; ``running`` holds what has not finished (the
metrics count it, tests and benchmarks wait for it to empty, and ``cancel`` stops it at shutdown). A job that
fails is logged and fails alone: it must never hurt a chat. The generations a job asks for run at the engine's
background priority, in what members' replies leave of it (records.BackgroundModel).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("brain")


class BackgroundJobs:
    def __init__(self) -> None:
        self.running: set[asyncio.Task[None]] = set()

    def start(self, job: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``job`` in the background; ``what`` names it in the log if it fails."""
        # the job is the task itself (not awaited inside a wrapper), so that one cancelled before it began, at
        # shutdown, is closed rather than left "never awaited"
        task = asyncio.create_task(job)
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        task.add_done_callback(lambda done: _log_failure(done, what))

    def cancel(self) -> None:
        for task in self.running:
            task.cancel()


def _log_failure(task: asyncio.Task[None], what: str) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("%s failed", what, exc_info=error)
