"""Admission control: at most ``limits.max_concurrent`` generations at once, over every route.

A slot is taken synchronously on the event loop (so two requests can never both see the last free slot),
before any work, and given back exactly once, whichever way the request ends: a reply, an error, a client
that left, or a stream that was never read.

    slot = runtime.admission.take()      # ApiError 503 with Retry-After when every slot is in use
    with slot:                           # released on leaving the block ...
        ...
    slot.hand_over()                     # ... unless handed over to a response that releases it itself
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from brain.service.errors import ApiError


class Slot:
    """One admitted request's claim on a generation slot."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._released = False
        self._handed_over = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission.in_use -= 1

    def hand_over(self) -> Slot:
        """Leave the release to whoever holds the slot next (a streaming response); returns the slot."""
        self._handed_over = True
        return self

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None or not self._handed_over:
            self.release()


class Admission:
    def __init__(self, limit: int, on_outcome: Callable[[str], None] | None = None) -> None:
        self.limit = limit
        self.in_use = 0
        # told "admitted" or "refused" for every request (the metrics count them)
        self.on_outcome = on_outcome or (lambda outcome: None)

    def take(self) -> Slot:
        """A slot, or a 503 the client may retry; call on the event loop, before any work for the request."""
        if self.in_use >= self.limit:
            self.on_outcome("refused")
            raise ApiError(
                503,
                "busy",
                "The brain is at its limit of concurrent requests; retry shortly.",
                {"Retry-After": "1"},
            )
        self.in_use += 1
        self.on_outcome("admitted")
        return Slot(self)
