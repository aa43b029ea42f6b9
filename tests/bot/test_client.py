"""BrainClient asks again only where that cannot store a chat turn twice: after a 503 or a refused
connection, never after the brain went quiet mid-request or once a streamed reply had begun."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from bot.client import BrainClient, BrainUnavailable
from brain.api_models import ChatReply, ChatRequest

REQUEST = ChatRequest(platform="telegram", user_id="1", chat_id="1", text="hello")
REPLY = {"reply": "hi there", "persona": "assistant", "tokens": 2, "finish_reason": "stop", "logged": False}


class FlakyBrain:
    """Answers /v1/chat by script: 'busy' (503), 'silent' (never answers), 'cut' (one delta, then gone), 'ok'."""

    def __init__(self, script: list[str]):
        self.script = script
        self.seen = 0

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        step = self.script[min(self.seen, len(self.script) - 1)]
        self.seen += 1
        if step == "busy":
            return web.json_response({"error": {"code": "busy", "message": "Too busy."}}, status=503)
        if step == "silent":
            await asyncio.sleep(30)
        if not body["stream"]:
            return web.json_response(REPLY)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: delta\ndata: {"delta": "hi"}\n\n')
        if step == "cut":
            request.transport.close()  # type: ignore[union-attr]
            return response
        await response.write(f"event: done\ndata: {json.dumps(REPLY)}\n\n".encode())
        return response

    async def stats(self, request: web.Request) -> web.Response:
        self.seen += 1
        if self.seen == 1:
            await asyncio.sleep(30)
        return web.json_response({"users": 0, "opted_in": 0, "log_entries": 0, "requests_served": 0, "model": "m"})


async def serve(brain: FlakyBrain) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/chat", brain.chat)
    app.router.add_get("/v1/stats", brain.stats)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@asynccontextmanager
async def flaky(script: list[str]) -> AsyncIterator[tuple[BrainClient, FlakyBrain]]:
    brain = FlakyBrain(script)
    runner, url = await serve(brain)
    client = BrainClient(url, timeout=0.5, retries=2, backoff_s=0.01)
    try:
        yield client, brain
    finally:
        await client.aclose()
        await runner.cleanup()


async def collect(client: BrainClient) -> list[str | ChatReply]:
    return [piece async for piece in client.chat_stream(REQUEST)]


async def test_a_busy_brain_is_asked_again_and_answers() -> None:
    async with flaky(["busy", "busy", "ok"]) as (client, brain):
        assert (await client.chat(REQUEST)).reply == "hi there"
        assert brain.seen == 3
    async with flaky(["busy", "ok"]) as (client, brain):
        pieces = await collect(client)
        assert pieces[0] == "hi" and pieces[-1].reply == "hi there"
        assert brain.seen == 2


async def test_a_brain_that_went_quiet_is_not_asked_the_same_turn_again() -> None:
    async with flaky(["silent", "ok"]) as (client, brain):
        with pytest.raises(BrainUnavailable) as caught:
            await client.chat(REQUEST)
        assert not caught.value.never_handled and brain.seen == 1
    async with flaky(["silent", "ok"]) as (client, brain):
        with pytest.raises(BrainUnavailable):
            await collect(client)
        assert brain.seen == 1


async def test_a_stream_cut_off_midway_is_not_asked_again() -> None:
    async with flaky(["cut", "ok"]) as (client, brain):
        shown: list[str | ChatReply] = []
        with pytest.raises(BrainUnavailable):
            async for piece in client.chat_stream(REQUEST):
                shown.append(piece)
        assert shown == ["hi"] and brain.seen == 1


async def test_a_read_is_asked_again_after_a_timeout() -> None:
    async with flaky(["ok"]) as (client, brain):
        stats = await client.stats()
        assert stats.users == 0 and brain.seen == 2


async def test_a_refused_connection_counts_as_never_handled() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        async with BrainClient(f"http://127.0.0.1:{port}", retries=1, backoff_s=0.01) as client:
            with pytest.raises(BrainUnavailable) as caught:
                await client.chat(REQUEST)
    assert caught.value.never_handled and caught.value.code == "unreachable"
