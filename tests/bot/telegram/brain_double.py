"""A stand-in for the brain's HTTP API, for the adapter's protocol tests only.

It answers the endpoints the adapter uses with the shapes of brain.api_models, so the real
BrainClient talks to it over HTTP; replies are scripted, and a test can hold a stream mid-way,
take the brain down and bring it back. The end-to-end tests use the real brain instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from brain.api_models import ChatRequest, PersonaSet

API_KEY = "double-key"
PRIVACY_TEXT = (
    "If you opt in, I keep what you write to me and what I answer, with the time and the chat, "
    "to fine-tune my model every night. Nothing is kept for training unless you opt in."
)
PRESETS = [
    {"name": "assistant", "description": "Helpful and brief", "system_prompt": "You are helpful.", "greeting": ""},
    {"name": "pirate", "description": "Talks like a pirate", "system_prompt": "Arr.", "greeting": "Ahoy!"},
    {"name": "poet", "description": "Answers in verse", "system_prompt": "Rhyme.", "greeting": ""},
]


def echo(request: ChatRequest) -> str:
    return f"You said: {request.text}"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class BrainDouble:
    def __init__(self) -> None:
        self.reply_for: Callable[[ChatRequest], str] = echo
        self.words_per_delta = 2
        # awaited before each delta with (request, delta index, text sent so far): a test can hold a stream
        self.before_delta: Callable[[ChatRequest, int, str], Awaitable[None]] | None = None
        # (status, code, message, retry-after seconds): the next chat requests are refused so, one each
        self.refusals: list[tuple[int, str, str, int | None]] = []
        self.requests: list[ChatRequest] = []
        self.events: list[tuple[str, str]] = []  # ("start" | "end", request text), in order
        self.persona: dict[str, str] = {}  # user key or group chat key -> persona name
        self.consent: dict[str, dict[str, Any]] = {}
        self.turns: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.forgotten: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> BrainDouble:
        app = web.Application(middlewares=[self._auth])
        routes = [
            ("POST", "/v1/chat", self._chat),
            ("GET", "/v1/personas", self._personas),
            ("GET", "/v1/users/{p}/{u}/persona", self._get_persona),
            ("PUT", "/v1/users/{p}/{u}/persona", self._set_persona),
            ("GET", "/v1/privacy", self._privacy),
            ("GET", "/v1/users/{p}/{u}/consent", self._get_consent),
            ("POST", "/v1/users/{p}/{u}/optin", self._optin),
            ("POST", "/v1/users/{p}/{u}/optout", self._optout),
            ("POST", "/v1/users/{p}/{u}/forget", self._forget),
            ("POST", "/v1/users/{p}/{u}/chats/{c}/reset", self._reset),
            ("GET", "/v1/users/{p}/{u}/chats/{c}/memory", self._memory),
            ("GET", "/v1/stats", self._stats),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Take the brain down: its port stops answering (start() brings it back on the same port)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]):
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "unauthorized", "a valid API key is required")
        return await handler(request)

    def _user(self, request: web.Request) -> str:
        return f"{request.match_info['p']}:{request.match_info['u']}"

    def _persona_key(self, user: str, chat_id: str, chat_kind: str) -> str:
        return f"chat:{chat_id}" if chat_kind == "group" else user

    # chat

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        chat = ChatRequest.model_validate(await request.json())
        self.requests.append(chat)
        if not chat.text.strip():
            return _error(400, "empty_text", "There is nothing to answer: the message is empty.")
        if self.refusals:
            status, code, message, retry_after = self.refusals.pop(0)
            response = _error(status, code, message)
            if retry_after is not None:
                response.headers["Retry-After"] = str(retry_after)
            return response
        self.events.append(("start", chat.text))
        reply = self.reply_for(chat)
        persona = self.persona.get(self._persona_key(chat.key, chat.chat_id, chat.chat_kind.value), "assistant")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = reply.split(" ")
        sent = ""
        for index in range(0, len(words), self.words_per_delta):
            delta = " ".join(words[index : index + self.words_per_delta])
            delta = delta if index == 0 else " " + delta
            if self.before_delta is not None:
                await self.before_delta(chat, index // self.words_per_delta, sent)
            sent += delta
            await response.write(f"event: delta\ndata: {json.dumps({'delta': delta})}\n\n".encode())
        logged = bool(self.consent.get(chat.key, {}).get("opted_in"))
        turns = self.turns.setdefault((chat.key, chat.chat_id), [])
        turns += [
            {"role": "user", "text": chat.text, "ts": time.time()},
            {"role": "assistant", "text": reply, "ts": time.time()},
        ]
        done = {"reply": reply, "persona": persona, "tokens": len(words), "finish_reason": "stop", "logged": logged}
        self.events.append(("end", chat.text))
        await response.write(f"event: done\ndata: {json.dumps(done)}\n\n".encode())
        await response.write_eof()
        return response

    # personas

    async def _personas(self, request: web.Request) -> web.Response:
        return web.json_response({"presets": PRESETS})

    def _state(self, name: str, custom: bool, scope: str, prompt: str = "") -> dict[str, Any]:
        preset = next((p for p in PRESETS if p["name"] == name), None)
        return {
            "name": name,
            "custom": custom,
            "scope": scope,
            "system_prompt": prompt or (preset["system_prompt"] if preset else ""),
            "greeting": preset["greeting"] if preset else "",
        }

    async def _get_persona(self, request: web.Request) -> web.Response:
        kind, chat_id = request.query.get("chat_kind", "direct"), request.query.get("chat_id", "")
        name = self.persona.get(self._persona_key(self._user(request), chat_id, kind), "assistant")
        return web.json_response(self._state(name, name == "custom", "chat" if kind == "group" else "user"))

    async def _set_persona(self, request: web.Request) -> web.Response:
        body = PersonaSet.model_validate(await request.json())
        scope = "chat" if body.chat_kind.value == "group" else "user"
        key = self._persona_key(self._user(request), body.chat_id, body.chat_kind.value)
        if body.custom is not None:
            self.persona[key] = "custom"
            return web.json_response(self._state("custom", True, scope, body.custom))
        if not any(p["name"] == body.preset for p in PRESETS):
            return _error(404, "unknown_persona", f"There is no persona '{body.preset}'. See /persona for the list.")
        self.persona[key] = body.preset or "assistant"
        return web.json_response(self._state(self.persona[key], False, scope))

    # consent and data

    async def _privacy(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "v1", "text": PRIVACY_TEXT})

    def _consent_state(self, user: str) -> dict[str, Any]:
        state = self.consent.get(user, {"opted_in": False})
        logged = sum(1 for (u, _), turns in self.turns.items() if u == user for t in turns if t["role"] == "user")
        return state | {"logged_turns": logged if state.get("opted_in") else 0}

    async def _get_consent(self, request: web.Request) -> web.Response:
        return web.json_response(self._consent_state(self._user(request)))

    async def _optin(self, request: web.Request) -> web.Response:
        self.consent[self._user(request)] = {"opted_in": True, "version": "v1", "at": "2026-01-02T03:04:05Z"}
        return web.json_response(self._consent_state(self._user(request)))

    async def _optout(self, request: web.Request) -> web.Response:
        self.consent[self._user(request)] = {"opted_in": False}
        return web.json_response(self._consent_state(self._user(request)))

    async def _forget(self, request: web.Request) -> web.Response:
        user = self._user(request)
        self.forgotten.append(user)
        deleted = len([k for k in self.turns if k[0] == user]) + (user in self.consent) + (user in self.persona)
        self.turns = {k: v for k, v in self.turns.items() if k[0] != user}
        self.consent.pop(user, None)
        self.persona.pop(user, None)
        return web.json_response({"forgotten": True, "deleted_keys": deleted})

    async def _reset(self, request: web.Request) -> web.Response:
        turns = self.turns.pop((self._user(request), request.match_info["c"]), [])
        return web.json_response({"cleared_turns": len(turns)})

    async def _memory(self, request: web.Request) -> web.Response:
        user, chat_id = self._user(request), request.match_info["c"]
        kind = request.query.get("chat_kind", "direct")
        persona = self.persona.get(self._persona_key(user, chat_id, kind), "assistant")
        return web.json_response({"summary": "", "turns": self.turns.get((user, chat_id), []), "persona": persona})

    async def _stats(self, request: web.Request) -> web.Response:
        users = {u for u, _ in self.turns}
        opted = sum(1 for s in self.consent.values() if s.get("opted_in"))
        return web.json_response(
            {
                "users": len(users),
                "opted_in": opted,
                "log_entries": 0,
                "requests_served": len(self.requests),
                "model": "double",
            }
        )
