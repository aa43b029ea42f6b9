"""How the brain is served: uvicorn, with limits that keep slow or idle clients from holding connections.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but waits for ever on a client that sends
its request headers a byte at a time; the protocol below gives every request ``limits.header_timeout_s`` to
send its headers. The body has its own deadline (brain/service/body_limits.py).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from brain.settings import LimitSettings

KEEP_ALIVE_S = 5


class HeaderDeadlineProtocol(H11Protocol):
    """h11 with a deadline on each request's headers: a connection that has not sent them in time is closed."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived whole
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # before the next pipelined request, whose headers disarm it again
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, limits: LimitSettings, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    protocol = functools.partial(HeaderDeadlineProtocol, header_timeout_s=limits.header_timeout_s)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=protocol,  # type: ignore[arg-type]
        timeout_keep_alive=KEEP_ALIVE_S,
        # past this many open connections and tasks, uvicorn answers 503 instead of accepting more work
        limit_concurrency=limits.max_concurrent * 4 + 64,
    )
