"""Request bodies are bounded in size and in time before any route sees them.

A body larger than ``limits.max_body_bytes`` is refused with 413 (at once when its Content-Length says so,
else as soon as that many bytes have arrived), and a body that takes longer than ``limits.body_timeout_s``
to arrive is refused with 408. The body is read here, then handed to the app whole.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brain.service.errors import error_response

# at most this much of a refused body is read and dropped, so that its sender hears the 413
DRAIN_BYTES = 64 * 1024 * 1024


class BodyLimits:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send, deadline)
            return
        body = bytearray()
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                text = "The request body did not arrive in time; send it whole, faster."
                await error_response(408, "body_timeout", text, {"Connection": "close"})(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send, deadline, more=message.get("more_body", False))
                return
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, deadline: float, more: bool = True) -> None:
        # a client still sending would see its connection reset instead of this answer: read on (and drop) what
        # it sends, within the body's deadline and a bound, then answer and close
        loop = asyncio.get_running_loop()
        drained = 0
        while more and drained <= DRAIN_BYTES and loop.time() < deadline:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                break
            drained += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
        text = f"The request body is larger than {self.max_bytes} bytes."
        await error_response(413, "body_too_large", text, {"Connection": "close"})(scope, receive, send)
