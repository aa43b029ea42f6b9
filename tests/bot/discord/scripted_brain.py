"""A stand-in for the brain's HTTP API, for tests of the Discord adapter's side of the protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiohttp import web

from brain.api_models import ChatReply, ChatRequest, Persona, PersonaList, PersonaSet, PersonaState, Stats

API_KEY = "test-key"


class ScriptedBrain:
    """The brain's HTTP API with scripted answers, for tests of the adapter's side of the protocol.

    It streams replies the way the brain does (server-sent `delta` events, then `done`) and can hold a
    reply halfway; what the brain does with a request is tested against the real brain elsewhere.
    """

    PRESETS = [
        Persona(name="assistant", description="Helpful and brief", system_prompt="You are helpful."),
        Persona(name="pirate", description="Talks like a pirate", system_prompt="Arr.", greeting="Ahoy!"),
    ]

    def __init__(self, port: int = 0):
        self.port = port
        self.requests: list[ChatRequest] = []
        self.events: list[str] = []  # "start <text>" / "end <text>", in the order the brain saw them
        self.reply_for: Callable[[ChatRequest], str] = lambda r: f"You said: {r.text}"
        self.chunk_chars = 6
        self.hold: asyncio.Event | None = None  # when set, a reply stops after its first delta until released
        self.persona_sets: list[PersonaSet] = []
        self.forgotten: list[str] = []
        self.stats_asked = 0
        self.refuse_chats = 0  # answer this many chat requests 503, as a brain whose model is still loading
        self._held: list[asyncio.Event] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedBrain:
        app = web.Application()
        app.router.add_post("/v1/chat", self._chat)
        app.router.add_get("/v1/personas", self._personas)
        app.router.add_put("/v1/users/{platform}/{user_id}/persona", self._set_persona)
        app.router.add_post("/v1/users/{platform}/{user_id}/forget", self._forget)
        app.router.add_get("/v1/stats", self._stats)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for gate in self._held:
            gate.set()  # a reply still held would keep the server from stopping
        assert self._runner is not None
        await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            raise web.HTTPUnauthorized(text=json.dumps({"error": {"code": "unauthorized", "message": "bad key"}}))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self._authorized(request)
        chat = ChatRequest.model_validate(await request.json())
        if self.refuse_chats:
            self.refuse_chats -= 1
            self.events.append(f"refused {chat.text}")
            error = {"error": {"code": "not_ready", "message": "the model is loading"}}
            return web.json_response(error, status=503)
        self.requests.append(chat)
        self.events.append(f"start {chat.text}")
        text = self.reply_for(chat)
        pieces = [text[i : i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, piece in enumerate(pieces):
            await response.write(f"event: delta\ndata: {json.dumps({'delta': piece})}\n\n".encode())
            if index == 0 and self.hold is not None:
                gate = self.hold
                self._held.append(gate)
                await gate.wait()
            await asyncio.sleep(0)
        reply = ChatReply(reply=text, persona="assistant", tokens=len(pieces), finish_reason="stop", logged=False)
        await response.write(f"event: done\ndata: {reply.model_dump_json()}\n\n".encode())
        self.events.append(f"end {chat.text}")
        await response.write_eof()
        return response

    async def _personas(self, request: web.Request) -> web.Response:
        self._authorized(request)
        return web.json_response(PersonaList(presets=self.PRESETS).model_dump(mode="json"))

    async def _set_persona(self, request: web.Request) -> web.Response:
        self._authorized(request)
        chosen = PersonaSet.model_validate(await request.json())
        self.persona_sets.append(chosen)
        preset = next(p for p in self.PRESETS if p.name == chosen.preset)
        scope = "chat" if chosen.chat_kind.value == "group" else "user"
        state = PersonaState(
            name=preset.name,
            custom=False,
            scope=scope,
            system_prompt=preset.system_prompt,
            greeting=preset.greeting,
        )
        return web.json_response(state.model_dump(mode="json"))

    async def _forget(self, request: web.Request) -> web.Response:
        self._authorized(request)
        self.forgotten.append(f"{request.match_info['platform']}:{request.match_info['user_id']}")
        return web.json_response({"forgotten": True, "deleted_keys": 3})

    async def _stats(self, request: web.Request) -> web.Response:
        self._authorized(request)
        self.stats_asked += 1
        stats = Stats(users=3, opted_in=1, log_entries=12, requests_served=40, model="scripted")
        return web.json_response(stats.model_dump(mode="json"))
