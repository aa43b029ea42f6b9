"""Memory's background jobs stop cleanly at shutdown, and one that fails is logged and fails alone."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

import pytest

from brain.memory.jobs import BackgroundJobs


async def fold() -> None:
    await asyncio.sleep(10)


async def broken() -> None:
    raise ValueError("the model went away")


def test_a_job_cancelled_before_it_began_leaves_no_coroutine_unawaited() -> None:
    async def shutdown_at_once() -> int:
        jobs = BackgroundJobs()
        jobs.start(fold(), "folding a summary")  # started by a reply, cancelled by the shutdown before it runs
        jobs.cancel()
        await asyncio.sleep(0.01)
        return len(jobs.running)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(shutdown_at_once()) == 0
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


def test_a_failing_job_is_logged_by_name_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    async def run_both() -> bool:
        jobs, done = BackgroundJobs(), asyncio.Event()

        async def fine() -> None:
            done.set()

        jobs.start(broken(), "extracting facts from a message of chat-1")
        jobs.start(fine(), "folding the summary of chat-1")
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.01)
        return not jobs.running

    with caplog.at_level(logging.ERROR, logger="brain"):
        assert asyncio.run(run_both())
    assert "extracting facts from a message of chat-1 failed" in caplog.text and "went away" in caplog.text
