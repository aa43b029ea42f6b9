"""How the brain is served: uvicorn, with limits that keep slow or idle clients from holding connections.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but waits for ever on a client that sends
its request headers a byte at a time; the protocol below gives every request ``limits.header_timeout_s`` to
send its headers. The body has its own deadline (brain/service/body_limits.py).

Connections that wait for headers (half-open: a partial request line, or nothing yet) cost the server nothing
but a slot, so they are bounded apart from requests: at most ``limits.half_open_per_client`` from one address
(more are closed at once) and ``limits.half_open_total`` in all (a new one closes the oldest waiting one, so a
few hundred idle sockets can only push each other out, never starve a client that sends its request). Requests
in flight are bounded by RequestCap (``limits.max_concurrent * 4 + 64``, 503 beyond it), which answers /healthz
and /readyz even at the cap: uvicorn's own ``limit_concurrency`` counted idle connections as load and answered
503 to everything, health checks included, while 330 half-open sockets were open.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from brain.service.errors import error_response
from brain.settings import LimitSettings

KEEP_ALIVE_S = 5


# answered even when every request slot is taken: a load balancer must not take a busy brain for a dead one
ALWAYS_ANSWERED = frozenset({"/healthz", "/readyz"})


class HalfOpen:
    """The connections of one server that wait for a request's headers, oldest first, and how many per client."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self.waiting: dict[HeaderDeadlineProtocol, str] = {}  # insertion order: oldest first
        self.by_client: Counter[str] = Counter()

    def admit(self, connection: HeaderDeadlineProtocol, client: str) -> bool:
        """Whether a new connection may wait for its headers; makes room by closing the oldest waiting one."""
        if self.by_client[client] >= self.per_client:
            return False
        while len(self.waiting) >= self.total:
            oldest = next(iter(self.waiting))
            self.leave(oldest)
            oldest.transport.close()
        return True

    def enter(self, connection: HeaderDeadlineProtocol, client: str) -> None:
        if connection not in self.waiting:
            self.waiting[connection] = client
            self.by_client[client] += 1

    def leave(self, connection: HeaderDeadlineProtocol) -> None:
        client = self.waiting.pop(connection, None)
        if client is not None:
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]


class HeaderDeadlineProtocol(H11Protocol):
    """h11 with a deadline on each request's headers (a connection that has not sent them in time is closed), and
    with the connections that wait for headers bounded per client and in all (HalfOpen)."""

    def __init__(self, *args: Any, header_timeout_s: float, half_open: HalfOpen, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.half_open = half_open
        self._client = ""
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self.half_open.admit(self, self._client):
            transport.close()  # this client already has its share of connections that send nothing
            return
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
        if self.transport.is_closing():
            return
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)
        self.half_open.enter(self, self._client)

    def _disarm(self) -> None:
        self.half_open.leave(self)
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


class RequestCap:
    """At most ``limit`` requests in flight; beyond it 503 with Retry-After, except for /healthz and /readyz."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in ALWAYS_ANSWERED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            text = "The brain is at its limit of requests in flight; retry shortly."
            await error_response(503, "busy", text, {"Retry-After": "1"})(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def request_cap(limits: LimitSettings) -> int:
    return limits.max_concurrent * 4 + 64


def uvicorn_config(app: Any, limits: LimitSettings, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    half_open = HalfOpen(limits.half_open_per_client, limits.half_open_total)
    protocol = functools.partial(HeaderDeadlineProtocol, header_timeout_s=limits.header_timeout_s, half_open=half_open)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=protocol,  # type: ignore[arg-type]
        timeout_keep_alive=KEEP_ALIVE_S,
        # no limit_concurrency: it counts idle connections as load and refuses health checks with the rest; the
        # app's RequestCap bounds requests in flight and HalfOpen the connections that send nothing
        limit_concurrency=None,
    )
