"""The one way tests wait for something: poll a condition until it holds, or fail loudly saying what was awaited.

    await eventually(lambda: brain.runtime.backend.active == 0, "the row was freed")
    eventually_sync(lambda: path.exists(), f"{path} was written", timeout=60)

A condition may be a coroutine function too (``await eventually(has_turns, "two turns were stored")``). The
value it last returned is in the failure message, so a test that times out says where it stood.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 30.0
POLL_S = 0.02


class NeverHappened(AssertionError):
    """The awaited condition did not hold within its timeout."""


# a condition gives None (or another falsy value) until it holds; what is returned is its first truthy value
@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]], what: str, *, timeout: float = DEFAULT_TIMEOUT_S
) -> T: ...
@overload
async def eventually(condition: Callable[[], T | None], what: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> T: ...
async def eventually(condition: Callable[[], Any], what: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    """The first truthy value of ``condition()``; raises NeverHappened after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise NeverHappened(f"waited {timeout} s for {what}; the condition last gave {last!r}")
        await asyncio.sleep(POLL_S)


def eventually_sync(condition: Callable[[], T | None], what: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> T:
    """``eventually`` for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise NeverHappened(f"waited {timeout} s for {what}; the condition last gave {last!r}")
        time.sleep(POLL_S)
