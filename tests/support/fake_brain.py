"""The one fake of the brain, for tests of what talks to it (the bots and BrainClient).

It serves the brain's HTTP API on a local port, reading every request and writing every answer through
brain.api_models and brain.api_feedback, so the real BrainClient talks to it as to the brain and a change of
the contract breaks these tests as it breaks the bots. Instead of a model it answers by script: a reply per
request, streamed in deltas that a test may hold, and faults (an error status, a brain that falls silent, a stream cut
midway, or no brain at all: stop(), then start() again on the same port). It keeps what a user can see
through the API (personas, consent, turns, which messages show a reply, ratings) in memory. What the brain
itself does is tested against the real one (tests/support/brain_server.py).

    async with FakeBrain() as brain:
        brain.reply_for = lambda request: "Ahoy!"
        brain.fail_next("chat", Refuse(503, "not_ready", "The model is still loading."))
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from brain.api_feedback import FeedbackRequest, FeedbackResult, TurnMessages, TurnMessagesResult
from brain.api_models import (
    ChatReply,
    ChatRequest,
    ConsentState,
    ErrorBody,
    ErrorDetail,
    Fact,
    FactList,
    FactPin,
    FactsDeleted,
    ForgetResult,
    MemoryView,
    OptOut,
    Persona,
    PersonaList,
    PersonaScope,
    PersonaSet,
    PersonaState,
    PrivacyNotice,
    ResetResult,
    Stats,
    StreamDelta,
    Turn,
    UserExport,
)

API_KEY = "fake-brain-key"
MODEL = "fake"
PRIVACY = PrivacyNotice(
    version="v1",
    text=(
        "If you opt in, I keep what you write to me and what I answer, with the time and the chat, "
        "to fine-tune my model every night. Nothing is kept for training unless you opt in."
    ),
)
CONSENT_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
PRESETS = [
    Persona(name="assistant", description="Helpful and brief", system_prompt="You are helpful."),
    Persona(name="pirate", description="Talks like a pirate", system_prompt="Arr.", greeting="Ahoy!"),
    Persona(name="poet", description="Answers in verse", system_prompt="Rhyme."),
]
DEFAULT_PERSONA = "assistant"


def echo(request: ChatRequest) -> str:
    return f"You said: {request.text}"


def by_words(count: int) -> Callable[[str], list[str]]:
    """Deltas of `count` words each, as a tokenizer's pieces join up (the spaces travel with the words)."""

    def split(reply: str) -> list[str]:
        words = reply.split(" ")
        return [
            (" " if start else "") + " ".join(words[start : start + count]) for start in range(0, len(words), count)
        ]

    return split


def by_chars(count: int) -> Callable[[str], list[str]]:
    """Deltas of `count` characters each."""
    return lambda reply: [reply[i : i + count] for i in range(0, len(reply), count)]


# faults a test can script, one per request


@dataclass(frozen=True)
class Refuse:
    """Answer with an error, as the brain does when busy (503), rate-limited (429) or handed bad input (4xx)."""

    status: int
    code: str
    message: str
    retry_after: int | None = None


@dataclass(frozen=True)
class Silent:
    """Take the request and never answer, like a brain that hangs: the client's timeout has to end it."""


@dataclass(frozen=True)
class CutAfter:
    """Stream this many deltas of the reply, then drop the connection without finishing it."""

    deltas: int


@dataclass(frozen=True)
class LostAfterStoring:
    """Answer and store the turn, then lose the answer on its way: `how` is "drop" (the connection closes before a
    byte of it), "502" (a proxy in front answers instead) or "before_done" (every word is sent, then the connection
    closes before the `done` event)."""

    how: Literal["drop", "502", "before_done"]


Fault = Refuse | Silent | CutAfter | LostAfterStoring
# awaited before each delta with (request, delta index, text sent so far): a test can hold a stream there
BeforeDelta = Callable[[ChatRequest, int, str], Awaitable[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHAT = web.RequestKey("chat", ChatRequest)
FAULT = web.RequestKey("fault", object)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(ErrorBody(error=ErrorDetail(code=code, message=message)), status)


def _event(name: str, model: BaseModel) -> bytes:
    return f"event: {name}\ndata: {model.model_dump_json()}\n\n".encode()


class FakeBrain:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        # the script
        self.reply_for: Callable[[ChatRequest], str] = echo
        self.deltas: Callable[[str], list[str]] = by_words(2)
        self.before_delta: BeforeDelta | None = None
        self._faults: dict[str, list[Fault]] = {}
        # what it was asked
        self.requests: list[ChatRequest] = []  # every chat request, answered or not
        self.events: list[str] = []  # "refused <text>", "start <text>", "end <text>", "cut <text>", in order
        self.asked: Counter[str] = Counter()  # operation name -> requests received
        # what a user can see of it through the API
        self.persona: dict[str, str] = {}  # a user's key, or "chat:<id>" for a group chat -> persona name
        self.custom_prompts: dict[str, str] = {}
        self.consent: dict[str, ConsentState] = {}
        self.turns: dict[tuple[str, str], list[Turn]] = {}  # (user key, chat id) -> remembered turns
        self.facts: dict[str, list[Fact]] = {}  # user key -> pinned facts
        self._stored_requests: set[tuple[str, str]] = set()  # (user key, request_id) of the turns stored
        # as the brain does: the reply kept per (user key, request_id), and those being generated
        self.kept: dict[tuple[str, str], ChatReply] = {}
        self._generating: dict[tuple[str, str], asyncio.Event] = {}
        self.replies: dict[str, ChatRequest] = {}  # turn id -> the request it answered (a retry's: the first one)
        self.retries: dict[str, str] = {}  # a retry's turn id -> the turn it answered again
        self.messages: dict[tuple[str, str, str], str] = {}  # (platform, chat id, message id) -> turn id
        self.ratings: dict[tuple[str, str], int] = {}  # (rater's key, turn id) -> their rating
        self.forgotten: list[str] = []
        self.replies_served = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, operation: str, fault: Fault, *, times: int = 1) -> None:
        """Make the next `times` requests of `operation` (a name in ROUTES: "chat", "stats", …) meet `fault`."""
        if operation not in {name for _, _, name in ROUTES}:
            raise ValueError(f"the brain has no operation {operation!r}")
        self._faults.setdefault(operation, []).extend([fault] * times)

    # lifecycle

    async def start(self) -> FakeBrain:
        """Listen (again) on the port: once started, the brain keeps its port across stop() and start()."""
        app = web.Application(middlewares=[self._gate])
        for method, path, name in ROUTES:
            app.router.add_route(method, path, getattr(self, f"_{name}"), name=name)
        # a stop() must not wait for replies a test holds or a Silent fault keeps open
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Take the brain away: its port refuses connections until start()."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBrain:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The key, as the brain checks it (readiness is public), then any fault scripted for this operation."""
        name = request.match_info.route.name or ""
        if name != "ready" and request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "unauthorized", "A valid API key is required.")
        self.asked[name] += 1
        faults = self._faults.get(name) or []
        fault = faults.pop(0) if faults else None
        if name == "chat":
            chat = ChatRequest.model_validate(await request.json())
            self.requests.append(chat)
            request[CHAT], request[FAULT] = chat, fault
            if isinstance(fault, Refuse):
                self.events.append(f"refused {chat.text}")
        if isinstance(fault, Refuse):
            response = _error(fault.status, fault.code, fault.message)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(fault.retry_after)
            return response
        if isinstance(fault, Silent):
            await asyncio.Event().wait()  # until stop() cancels it, or the client gives up
        return await handler(request)

    # chat

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        chat = request[CHAT]
        first = self._retried(chat) if chat.is_retry else None
        if chat.is_retry and first is None:
            return _error(404, "unknown_turn", "There is no reply of mine to your message here to answer again.")
        if first is not None:
            chat = self.replies[first].model_copy(update={"retry_of": first, "request_id": chat.request_id})
        if not chat.text.strip():
            return _error(400, "empty_text", "There is nothing to answer: the message is empty.")
        key = (chat.key, chat.request_id or "")
        if chat.request_id is not None and key in self._generating:
            await self._generating[key].wait()  # joined: the same reply, once it is done
        if chat.request_id is not None and key in self.kept:
            # asked again: the reply kept for this request, with its turn id
            self.events.append(f"again {chat.text}")
            kept = self.kept[key]
            if not chat.stream:
                return _json(kept)
            again = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await again.prepare(request)
            await again.write(_event("delta", StreamDelta(delta=kept.reply)) + _event("done", kept))
            await again.write_eof()
            return again
        generating = self._generating.setdefault(key, asyncio.Event()) if chat.request_id else asyncio.Event()
        try:
            return await self._answer(request, chat)
        finally:
            generating.set()
            if self._generating.get(key) is generating:
                del self._generating[key]

    async def _answer(self, request: web.Request, chat: ChatRequest) -> web.StreamResponse:
        self.events.append(f"start {chat.text}")
        reply = self.reply_for(chat)
        fault = request[FAULT]
        lost = fault.how if isinstance(fault, LostAfterStoring) else None
        assert request.transport is not None
        if lost in ("drop", "502"):
            self._remember(chat, reply)
            if lost == "drop":
                request.transport.close()
                return web.Response()
            return _error(502, "bad_gateway", "Bad gateway")
        if not chat.stream:
            return _json(self._remember(chat, reply))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        sent = ""
        cut = fault.deltas if isinstance(fault, CutAfter) else None
        for index, delta in enumerate(self.deltas(reply)):
            if self.before_delta is not None:
                await self.before_delta(chat, index, sent)
            if index == cut:
                self.events.append(f"cut {chat.text}")
                request.transport.close()
                return response
            await response.write(_event("delta", StreamDelta(delta=delta)))
            sent += delta
        done = self._remember(chat, reply)
        if lost == "before_done":
            self.events.append(f"cut {chat.text}")
            request.transport.close()
            return response
        await response.write(_event("done", done))
        await response.write_eof()
        return response

    def _remember(self, chat: ChatRequest, reply: str) -> ChatReply:
        """Store the turn as the brain does once a reply is complete (once per idempotency key), and say so."""
        now = time.time()
        key = (chat.key, chat.request_id or "")
        if chat.request_id is not None and key in self.kept:
            return self.kept[key]  # stored meanwhile: the kept reply stands
        # a retry answers a message stored already
        if chat.retry_of is None and (chat.request_id is None or key not in self._stored_requests):
            self._stored_requests.add(key)
            self.turns.setdefault((chat.key, chat.chat_id), []).extend(
                [Turn(role="user", text=chat.text, ts=now), Turn(role="assistant", text=reply, ts=now)]
            )
        self.replies_served += 1
        self.events.append(f"end {chat.text}")
        persona = self._persona_name(chat.key, chat.chat_id, chat.chat_kind.value)
        logged = self._consent(chat.key).opted_in
        turn_id = f"{len(self.replies) + 1:016x}"
        self.replies[turn_id] = chat.model_copy(update={"retry_of": None})
        if chat.retry_of is not None:
            self.retries[turn_id] = chat.retry_of
        answered = ChatReply(
            reply=reply,
            persona=persona,
            tokens=len(reply.split()),
            finish_reason="stop",
            logged=logged,
            turn_id=turn_id,
        )
        if chat.request_id is not None:
            self.kept[key] = answered
        return answered

    def _retried(self, chat: ChatRequest) -> str | None:
        """The first reply to the message a /retry asks about: named by a message showing a reply, or the last."""
        if chat.retry_message is not None:
            turn_id = self.messages.get((chat.platform, chat.chat_id, chat.retry_message))
        elif chat.retry_of == "last":
            mine = [t for t, asked in self.replies.items() if (asked.key, asked.chat_id) == (chat.key, chat.chat_id)]
            turn_id = mine[-1] if mine else None
        else:
            turn_id = chat.retry_of
        if turn_id is None or turn_id not in self.replies or self.replies[turn_id].key != chat.key:
            return None
        return self.retries.get(turn_id, turn_id)

    # reactions

    async def _turn_messages(self, request: web.Request) -> web.Response:
        turn_id = request.match_info["turn_id"]
        shown = TurnMessages.model_validate(await request.json())
        if turn_id not in self.replies:
            return _error(404, "unknown_turn", "There is no such reply.")
        for message_id in shown.message_ids:
            self.messages[(shown.platform, shown.chat_id, message_id)] = turn_id
        return _json(TurnMessagesResult(turn_id=turn_id, mapped=len(shown.message_ids)))

    def messages_of(self, turn_id: str) -> list[str]:
        """The platform messages a bot said show the reply `turn_id`."""
        return [message_id for (_, _, message_id), turn in self.messages.items() if turn == turn_id]

    async def _feedback(self, request: web.Request) -> web.Response:
        rating = FeedbackRequest.model_validate(await request.json())
        turn_id = rating.turn_id or self.messages.get((rating.platform, rating.chat_id, rating.message_id or ""))
        if turn_id is None or turn_id not in self.replies:
            return _error(404, "unknown_turn", "That message is not one of my replies, or it is too old.")
        if rating.rating:
            self.ratings[(rating.key, turn_id)] = rating.rating
        else:
            self.ratings.pop((rating.key, turn_id), None)
        stored = self._consent(rating.key).opted_in and self._consent(self.replies[turn_id].key).opted_in
        reason = "" if stored else "It is not kept for training: both of you have to opt in."
        return _json(FeedbackResult(turn_id=turn_id, rating=rating.rating, stored=stored, reason=reason))

    # personas

    async def _personas(self, request: web.Request) -> web.Response:
        return _json(PersonaList(presets=PRESETS))

    async def _preset(self, request: web.Request) -> web.Response:
        preset = next((p for p in PRESETS if p.name == request.match_info["name"]), None)
        if preset is None:
            return _error(404, "unknown_persona", f"There is no persona '{request.match_info['name']}'.")
        return _json(preset)

    async def _get_persona(self, request: web.Request) -> web.Response:
        kind = request.query.get("chat_kind", "direct")
        key = self._persona_key(_user(request), request.query.get("chat_id", ""), kind)
        return _json(self._persona_state(key, kind))

    async def _set_persona(self, request: web.Request) -> web.Response:
        chosen = PersonaSet.model_validate(await request.json())
        key = self._persona_key(_user(request), chosen.chat_id, chosen.chat_kind.value)
        if chosen.custom is not None:
            self.persona[key], self.custom_prompts[key] = "custom", chosen.custom
        elif any(p.name == chosen.preset for p in PRESETS):
            self.persona[key] = chosen.preset or DEFAULT_PERSONA
        else:
            return _error(404, "unknown_persona", f"There is no persona '{chosen.preset}'. See /persona for the list.")
        return _json(self._persona_state(key, chosen.chat_kind.value))

    def _persona_key(self, user: str, chat_id: str, chat_kind: str) -> str:
        return f"chat:{chat_id}" if chat_kind == "group" else user

    def _persona_name(self, user: str, chat_id: str, chat_kind: str) -> str:
        return self.persona.get(self._persona_key(user, chat_id, chat_kind), DEFAULT_PERSONA)

    def _persona_state(self, key: str, chat_kind: str) -> PersonaState:
        name = self.persona.get(key, DEFAULT_PERSONA)
        scope = PersonaScope.chat if chat_kind == "group" else PersonaScope.user
        if name == "custom":
            return PersonaState(name=name, custom=True, scope=scope, system_prompt=self.custom_prompts[key])
        preset = next(p for p in PRESETS if p.name == name)
        return PersonaState(
            name=name, custom=False, scope=scope, system_prompt=preset.system_prompt, greeting=preset.greeting
        )

    # consent and data

    async def _privacy(self, request: web.Request) -> web.Response:
        return _json(PRIVACY)

    def _consent(self, user: str) -> ConsentState:
        state = self.consent.get(user, ConsentState(opted_in=False))
        logged = sum(1 for (u, _), turns in self.turns.items() if u == user for t in turns if t.role == "user")
        return state.model_copy(update={"logged_turns": logged if state.opted_in else 0})

    async def _get_consent(self, request: web.Request) -> web.Response:
        return _json(self._consent(_user(request)))

    async def _optin(self, request: web.Request) -> web.Response:
        self.consent[_user(request)] = ConsentState(opted_in=True, version=PRIVACY.version, at=CONSENT_AT)
        return _json(self._consent(_user(request)))

    async def _optout(self, request: web.Request) -> web.Response:
        OptOut.model_validate(await request.json() if request.can_read_body else {})
        self.consent[_user(request)] = ConsentState(opted_in=False)
        return _json(self._consent(_user(request)))

    async def _forget(self, request: web.Request) -> web.Response:
        user = _user(request)
        self.forgotten.append(user)
        chats = [key for key in self.turns if key[0] == user]
        deleted = len(chats) + (user in self.consent) + (user in self.persona)
        for key in chats:
            del self.turns[key]
        self.consent.pop(user, None)
        self.persona.pop(user, None)
        self.facts.pop(user, None)
        self.kept = {key: kept for key, kept in self.kept.items() if key[0] != user}
        return _json(ForgetResult(forgotten=True, deleted_keys=deleted))

    async def _export(self, request: web.Request) -> web.Response:
        user = _user(request)
        chats = {
            chat_id: MemoryView(summary="", turns=turns, persona=self._persona_name(user, chat_id, "direct"))
            for (u, chat_id), turns in self.turns.items()
            if u == user
        }
        return _json(UserExport(user=user, profile={}, chats=chats, log=[]))

    async def _reset(self, request: web.Request) -> web.Response:
        turns = self.turns.pop((_user(request), request.match_info["chat_id"]), [])
        return _json(ResetResult(cleared_turns=len(turns)))

    async def _memory(self, request: web.Request) -> web.Response:
        user, chat_id = _user(request), request.match_info["chat_id"]
        persona = self._persona_name(user, chat_id, request.query.get("chat_kind", "direct"))
        return _json(MemoryView(summary="", turns=self.turns.get((user, chat_id), []), persona=persona))

    def _facts_in(self, request: web.Request) -> list[Fact]:
        """A user's facts that the chat asked about may use: all in a direct chat, a group's own in a group."""
        chat_id, kind = request.query["chat_id"], request.query.get("chat_kind", "direct")
        facts = self.facts.get(_user(request), [])
        return facts if kind == "direct" else [f for f in facts if (f.chat_id, f.chat_kind.value) == (chat_id, kind)]

    async def _facts(self, request: web.Request) -> web.Response:
        return _json(FactList(facts=self._facts_in(request)))

    async def _pin_fact(self, request: web.Request) -> web.Response:
        pin = FactPin.model_validate(await request.json())
        fact = Fact(id=secrets.token_hex(4), text=pin.text, source="pinned",
                    chat_id=pin.chat_id, chat_kind=pin.chat_kind, ts=time.time())  # fmt: skip
        self.facts.setdefault(pin.key, []).append(fact)
        return _json(fact, 201)

    async def _forget_fact(self, request: web.Request) -> web.Response:
        return self._drop_facts(request, {request.match_info["fact_id"]})

    async def _clear_facts(self, request: web.Request) -> web.Response:
        return self._drop_facts(request, {f.id for f in self._facts_in(request)})

    def _drop_facts(self, request: web.Request, ids: set[str]) -> web.Response:
        facts = self.facts.get(_user(request), [])
        self.facts[_user(request)] = [f for f in facts if f.id not in ids]
        return _json(FactsDeleted(deleted=len(facts) - len(self.facts[_user(request)])))

    async def _stats(self, request: web.Request) -> web.Response:
        users = {user for user, _ in self.turns}
        opted_in = sum(1 for state in self.consent.values() if state.opted_in)
        stats = Stats(
            users=len(users), opted_in=opted_in, log_entries=0, requests_served=self.replies_served, model=MODEL
        )
        return _json(stats)

    async def _ready(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ready", "model": MODEL})


def _user(request: web.Request) -> str:
    return f"{request.match_info['platform']}:{request.match_info['user_id']}"


_USER = "/v1/users/{platform}/{user_id}"
# (method, path, operation name): the brain's routes that BrainClient calls
ROUTES = [
    ("GET", "/readyz", "ready"),
    ("POST", "/v1/chat", "chat"),
    ("GET", "/v1/personas", "personas"),
    ("GET", "/v1/personas/{name}", "preset"),
    ("GET", f"{_USER}/persona", "get_persona"),
    ("PUT", f"{_USER}/persona", "set_persona"),
    ("GET", "/v1/privacy", "privacy"),
    ("GET", f"{_USER}/consent", "get_consent"),
    ("POST", f"{_USER}/optin", "optin"),
    ("POST", f"{_USER}/optout", "optout"),
    ("POST", f"{_USER}/forget", "forget"),
    ("GET", f"{_USER}/export", "export"),
    ("POST", f"{_USER}/chats/{{chat_id}}/reset", "reset"),
    ("GET", f"{_USER}/chats/{{chat_id}}/memory", "memory"),
    ("GET", f"{_USER}/facts", "facts"),
    ("POST", f"{_USER}/facts", "pin_fact"),
    ("DELETE", f"{_USER}/facts/{{fact_id}}", "forget_fact"),
    ("DELETE", f"{_USER}/facts", "clear_facts"),
    ("GET", "/v1/stats", "stats"),
    ("POST", "/v1/turns/{turn_id}/messages", "turn_messages"),
    ("POST", "/v1/feedback", "feedback"),
]
