"""The one typed client of the brain's HTTP API, shared by every adapter and the console.

Speaks only the contract in brain.api_models and brain.api_feedback; imports neither torch nor redis.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

from brain.api_feedback import (
    TURN_ID_PATTERN,
    CompareConsent,
    CompareConsentState,
    ComparisonRequest,
    ComparisonResult,
    FeedbackRequest,
    FeedbackResult,
    TurnMessages,
    TurnMessagesResult,
)
from brain.api_models import (
    ChatReply,
    ChatRequest,
    ConsentState,
    Fact,
    FactList,
    FactPin,
    FactsDeleted,
    ForgetResult,
    MemoryView,
    OptOut,
    Persona,
    PersonaList,
    PersonaSet,
    PersonaState,
    PrivacyNotice,
    ResetResult,
    Stats,
    UserExport,
    UserRef,
)

if TYPE_CHECKING:
    from brain.settings import Settings

M = TypeVar("M", bound=BaseModel)


class BrainError(Exception):
    """The brain answered with an error a person can read (4xx, or 503 while Redis is down)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class BrainUnavailable(BrainError):
    """The brain could not be reached, timed out, or is not ready.

    ``never_handled`` is true when the brain surely did not act on the request (the connection was
    refused, or it answered 502/503/504), so asking again cannot store a chat turn twice.
    """

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None, *, never_handled: bool = False
    ):
        super().__init__(status, code, message, retry_after)
        self.never_handled = never_handled or status in (502, 503, 504)


def _transport_error(exc: httpx.HTTPError) -> BrainUnavailable:
    refused = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    return BrainUnavailable(0, "unreachable", f"the brain could not be reached: {exc}", never_handled=refused)


class BrainClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            transport=transport,
        )
        self.retries = retries
        self.backoff_s = backoff_s

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str | None = None) -> BrainClient:
        """A client of the configured brain (or of ``base_url``), with the configured key and timeout."""
        key = settings.secrets.api_key.get_secret_value() if settings.secrets.api_key else None
        return cls(base_url or settings.bot.brain_url, key, timeout=settings.bot.timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> BrainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # plumbing

    async def _request(
        self, method: str, path: str, *, json_body: Any = None, params: Any = None, idempotent: bool = True
    ) -> Any:
        """One call, retried with backoff while the brain is unreachable or unavailable (never on 4xx).
        A call that is not idempotent is retried only when the brain surely never acted on it."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.request(method, path, json=json_body, params=params)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                error: BrainError = _transport_error(exc)
            else:
                if response.status_code < 400:
                    return response.json()
                error = _error_from(response.status_code, response.headers, response.content)
            if not _worth_retrying(error, idempotent) or attempt == self.retries:
                raise error
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get(self, path: str, model: type[M], params: Any = None) -> M:
        return model.model_validate(await self._request("GET", path, params=params))

    async def _post(self, path: str, model: type[M], body: BaseModel | None = None) -> M:
        payload = body.model_dump(mode="json") if body is not None else None
        return model.model_validate(await self._request("POST", path, json_body=payload))

    # health

    async def alive(self) -> bool:
        """Whether a brain answers at all (its model or Redis may not be ready yet)."""
        try:
            response = await self._http.get("/healthz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def ready(self) -> bool:
        try:
            response = await self._http.get("/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # chat

    async def chat(self, request: ChatRequest) -> ChatReply:
        """One reply, whole; a request with retry_of answers that turn's message again (a second reply)."""
        # the brain stores every turn it answers, so a chat is asked again only if it never got there
        body = request.model_copy(update={"stream": False}).model_dump(mode="json")
        return ChatReply.model_validate(await self._request("POST", "/v1/chat", json_body=body, idempotent=False))

    async def chat_stream(
        self, request: ChatRequest, *, retries: int | None = None
    ) -> AsyncGenerator[str | ChatReply, None]:
        """Yields text deltas as they are generated, then the final ChatReply.

        Asked again with backoff (`retries` times, the client's setting by default) while the brain surely never
        took the message; once text has come, or the brain went quiet mid-request, the error stands (the turn may
        be stored already: a caller that asks again with the request's `request_id` gets the reply kept for it).
        """
        delay = self.backoff_s
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            begun = False
            try:
                async with aclosing(self._stream_once(request)) as pieces:
                    async for piece in pieces:
                        begun = True
                        yield piece
                return
            except BrainUnavailable as exc:
                if begun or not exc.never_handled or attempt == retries:
                    raise
            await asyncio.sleep(delay)
            delay *= 2

    async def _stream_once(self, request: ChatRequest) -> AsyncGenerator[str | ChatReply, None]:
        body = request.model_copy(update={"stream": True}).model_dump(mode="json")
        try:
            async with self._http.stream("POST", "/v1/chat", json=body) as response:
                if response.status_code >= 400:
                    raise _error_from(response.status_code, response.headers, await response.aread())
                event = "message"
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:].strip())
                        if event == "delta":
                            yield data["delta"]
                        elif event == "done":
                            yield ChatReply.model_validate(data)
                            return
                        elif event == "error":
                            raise BrainError(503, data["error"]["code"], data["error"]["message"])
                    elif not line:
                        event = "message"
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise _transport_error(exc) from exc
        raise BrainUnavailable(0, "incomplete", "the brain stopped before finishing the reply")

    # reactions

    async def link_turn_messages(self, turn_id: str, messages: TurnMessages) -> TurnMessagesResult:
        """Tell the brain which platform messages show a turn, so that a reaction on any of them rates it."""
        if not re.fullmatch(TURN_ID_PATTERN, turn_id):
            raise ValueError(f"not a turn id: {turn_id!r}")
        # mapping the same ids again changes nothing, so this is asked again like any idempotent call
        return await self._post(f"/v1/turns/{turn_id}/messages", TurnMessagesResult, messages)

    async def feedback(self, request: FeedbackRequest) -> FeedbackResult:
        """Rate a reply (or take a rating back: rating 0). A rating set twice is the same rating."""
        return await self._post("/v1/feedback", FeedbackResult, request)

    async def agree_to_compare(self, user: UserRef, agreed: bool) -> CompareConsentState:
        """Agree (or no longer agree) to be asked now and then which of two replies the member prefers."""
        return await self._post(f"{_user_path(user)}/compare", CompareConsentState, CompareConsent(agreed=agreed))

    async def compare(self, request: ComparisonRequest) -> ComparisonResult:
        """The member's choice between two replies to one of their messages, kept as one preference pair."""
        return await self._post("/v1/compare", ComparisonResult, request)

    # personas

    async def personas(self) -> list[Persona]:
        return (await self._get("/v1/personas", PersonaList)).presets

    async def persona(self, name: str) -> Persona:
        return await self._get(f"/v1/personas/{name}", Persona)

    async def get_persona(self, user: UserRef, chat_id: str, chat_kind: str) -> PersonaState:
        params = {"chat_id": chat_id, "chat_kind": chat_kind}
        return await self._get(f"{_user_path(user)}/persona", PersonaState, params)

    async def set_persona(self, request: PersonaSet) -> PersonaState:
        data = await self._request("PUT", f"{_user_path(request)}/persona", json_body=request.model_dump(mode="json"))
        return PersonaState.model_validate(data)

    # consent and data

    async def privacy(self) -> PrivacyNotice:
        return await self._get("/v1/privacy", PrivacyNotice)

    async def consent(self, user: UserRef) -> ConsentState:
        return await self._get(f"{_user_path(user)}/consent", ConsentState)

    async def opt_in(self, user: UserRef) -> ConsentState:
        return await self._post(f"{_user_path(user)}/optin", ConsentState)

    async def opt_out(self, user: UserRef, *, delete_logs: bool = False) -> ConsentState:
        return await self._post(f"{_user_path(user)}/optout", ConsentState, OptOut(delete_logs=delete_logs))

    async def forget(self, user: UserRef) -> ForgetResult:
        return await self._post(f"{_user_path(user)}/forget", ForgetResult)

    async def export(self, user: UserRef) -> UserExport:
        return await self._get(f"{_user_path(user)}/export", UserExport)

    async def reset(self, user: UserRef, chat_id: str) -> ResetResult:
        return await self._post(f"{_user_path(user)}/chats/{chat_id}/reset", ResetResult)

    async def memory(self, user: UserRef, chat_id: str, chat_kind: str = "direct") -> MemoryView:
        params = {"chat_kind": chat_kind}
        return await self._get(f"{_user_path(user)}/chats/{chat_id}/memory", MemoryView, params)

    # facts about the user

    async def facts(self, user: UserRef, chat_id: str, chat_kind: str = "direct") -> list[Fact]:
        """The user's facts that this chat may use (all of them in a direct chat), oldest first."""
        params = {"chat_id": chat_id, "chat_kind": chat_kind}
        return (await self._get(f"{_user_path(user)}/facts", FactList, params)).facts

    async def remember(self, pin: FactPin) -> Fact:
        # the brain keeps a fact once, so a pin asked again after a lost answer is not stored twice
        return await self._post(f"{_user_path(pin)}/facts", Fact, pin)

    async def forget_fact(self, user: UserRef, fact_id: str) -> FactsDeleted:
        return FactsDeleted.model_validate(await self._request("DELETE", f"{_user_path(user)}/facts/{fact_id}"))

    async def clear_facts(self, user: UserRef, chat_id: str, chat_kind: str = "direct") -> FactsDeleted:
        """Forget every fact that this chat may use."""
        params = {"chat_id": chat_id, "chat_kind": chat_kind}
        return FactsDeleted.model_validate(await self._request("DELETE", f"{_user_path(user)}/facts", params=params))

    async def stats(self) -> Stats:
        return await self._get("/v1/stats", Stats)


def _user_path(user: UserRef) -> str:
    return f"/v1/users/{user.platform}/{user.user_id}"


def _worth_retrying(error: BrainError, idempotent: bool) -> bool:
    return isinstance(error, BrainUnavailable) and (idempotent or error.never_handled)


def _error_from(status: int, headers: httpx.Headers, content: bytes) -> BrainError:
    try:
        detail = json.loads(content)["error"]
        code, message = detail["code"], detail["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"the brain answered HTTP {status}"
    retry_after = float(headers["retry-after"]) if "retry-after" in headers else None
    kind = BrainUnavailable if status in (502, 503, 504) else BrainError
    return kind(status, code, message, retry_after)
