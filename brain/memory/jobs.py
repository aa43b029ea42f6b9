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
        task = asyncio.create_task(_logged(job, what))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    def cancel(self) -> None:
        for task in self.running:
            task.cancel()


async def _logged(job: Coroutine[Any, Any, None], what: str) -> None:
    try:
        await job
    except Exception:
        log.exception("%s failed", what)
