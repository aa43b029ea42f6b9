"""OpenAI-compatible /v1/chat/completions and /v1/completions over the same engine: stateless, no memory,
no logging. `model: community` is served with the live community adapter; the served model's own name (as
/v1/models lists it) or `default` with the base model; any other name is a 404 model_not_found."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Request

from brain.adapters import COMMUNITY
from brain.api_openai import (
    OAIChatRequest,
    OAIChatResponse,
    OAIChoice,
    OAICompletionChoice,
    OAICompletionRequest,
    OAICompletionResponse,
    OAIMessage,
    OAISampling,
    OAIUsage,
)
from brain.engine.backend import Generated
from brain.prompt import render
from brain.service.admission import Slot
from brain.service.auth import Authorized
from brain.service.deps import RuntimeDep
from brain.service.errors import ApiError, responses
from brain.service.runtime import Runtime
from brain.service.streaming import EventStream, events_or_error, json_line, stream_responses, unless_disconnected

router = APIRouter(dependencies=[Authorized], tags=["openai"])
# the name OAISampling.model defaults to: the base model
DEFAULT_MODEL = "default"
STREAMED = "The completion; with `stream`, `data:` chunks, then `data: [DONE]` (an error ends the stream as "
STREAMED += "a chunk holding `error`)."

# The owner of this route's prompts in the prefix cache. It is stateless and keeps no member's words: its client
# (whoever holds the API key) sends the whole history every time and sees every reply, so its conversations reuse
# each other's prefixes, as a member's own chats do; no member of the chat platforms is ever this owner.
API_CLIENT = "openai-route"


@router.get("/v1/models", responses=responses())
async def models(runtime: RuntimeDep) -> dict[str, Any]:
    """The served model, and `community` while a community adapter is live, OpenAI style."""
    names = [runtime.model_name] + ([COMMUNITY] if COMMUNITY in runtime.adapters.live else [])
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "ownchat"} for name in names]}


@router.post(
    "/v1/chat/completions",
    response_model=OAIChatResponse,
    responses={**responses(404), **stream_responses(STREAMED, ["message"])},
)
async def chat_completions(body: OAIChatRequest, request: Request, runtime: RuntimeDep) -> Any:
    """Chat completions for any OpenAI client (streaming with `stream: true`)."""
    max_new = body.max_completion_tokens or body.max_tokens or runtime.settings.model.max_new_tokens
    _check_model(runtime, body)
    _check_chars(runtime, sum(len(m.content) for m in body.messages), "The messages")
    with runtime.admission.take() as slot:
        ids = await runtime.off_loop(render, runtime.tokenizer, [m.model_dump() for m in body.messages])
        _check_fit(runtime, ids, body, max_new, what="The messages")
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.stream:

            def choice(piece: str | None, finish: str | None = None) -> dict[str, Any]:
                delta = {"role": "assistant", "content": ""} if piece is None else ({"content": piece} if piece else {})
                return {"index": 0, "delta": delta, "finish_reason": finish}

            events = _events(runtime, ids, body, max_new, choice, opening=True)
            return _sse(events, cid, "chat.completion.chunk", created, runtime.model_name, slot)
        _, result = await unless_disconnected(request, _complete(runtime, ids, body, max_new))
    return OAIChatResponse(
        id=cid,
        created=created,
        model=runtime.model_name,
        choices=[OAIChoice(message=OAIMessage(role="assistant", content=result.text), finish_reason=_finish(result))],
        usage=_usage(ids, result),
    )


@router.post(
    "/v1/completions",
    response_model=OAICompletionResponse,
    responses={**responses(400, 404), **stream_responses(STREAMED, ["message"])},
)
async def completions(body: OAICompletionRequest, request: Request, runtime: RuntimeDep) -> Any:
    """Text completions of a raw prompt, which may be token ids already rendered by the caller."""
    _check_model(runtime, body)
    if isinstance(body.prompt, str):
        _check_chars(runtime, len(body.prompt), "The prompt")
    else:
        vocab = len(runtime.tokenizer)
        if any(not 0 <= i < vocab for i in body.prompt):
            raise ApiError(400, "invalid_prompt", f"The prompt holds token ids outside this model's 0..{vocab - 1}.")
    with runtime.admission.take() as slot:
        if isinstance(body.prompt, str):
            ids = await runtime.off_loop(_tokenize, runtime.tokenizer, body.prompt)
        else:
            ids = body.prompt
        _check_fit(runtime, ids, body, body.max_tokens, what="The prompt")
        cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.stream:

            def choice(piece: str | None, finish: str | None = None) -> dict[str, Any]:
                return {"index": 0, "text": piece or "", "finish_reason": finish}

            events = _events(runtime, ids, body, body.max_tokens, choice, opening=False)
            return _sse(events, cid, "text_completion", created, runtime.model_name, slot)
        text, result = await unless_disconnected(request, _complete(runtime, ids, body, body.max_tokens))
    return OAICompletionResponse(
        id=cid,
        created=created,
        model=runtime.model_name,
        choices=[OAICompletionChoice(text=text, finish_reason=_finish(result))],
        usage=_usage(ids, result),
    )


def _tokenize(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _check_chars(runtime: Runtime, chars: int, what: str) -> None:
    """Refuse, before anything is tokenized, a prompt longer in characters than any prompt can be."""
    limit = runtime.settings.limits.max_prompt_chars
    if chars > limit:
        raise ApiError(413, "context_length_exceeded", f"{what} have {chars} characters; at most {limit} fit.")


def _check_model(runtime: Runtime, body: OAISampling) -> None:
    """Refuse, before any work, a model this brain does not serve (a name is never a path to look up)."""
    if body.model == COMMUNITY:
        if COMMUNITY not in runtime.adapters.live:
            raise ApiError(404, "model_not_found", "No community adapter is live yet; `trainer nightly` promotes one.")
    elif body.model not in (DEFAULT_MODEL, runtime.model_name):
        served = ", ".join(sorted({DEFAULT_MODEL, runtime.model_name, COMMUNITY}))
        raise ApiError(404, "model_not_found", f"There is no model by that name here; ask for one of: {served}.")


def _check_fit(runtime: Runtime, ids: list[int], body: OAISampling, max_new: int, *, what: str) -> None:
    """Refuse a prompt that does not fit the context."""
    budget = runtime.prompt_budget(max_new)
    if len(ids) > budget:
        message = f"{what} take {len(ids)} tokens; at most {budget} fit with max_tokens={max_new}."
        raise ApiError(413, "context_length_exceeded", message)


@asynccontextmanager
async def _adapter(runtime: Any, model: str) -> AsyncIterator[str | None]:
    """The live community adapter for `model: community` (held loaded while in use), else the base model."""
    if model != COMMUNITY:
        yield None
        return
    async with runtime.adapters.serving(None, None) as name:
        yield name


def _finish(result: Generated) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def _usage(ids: list[int], result: Generated) -> OAIUsage:
    return OAIUsage(prompt_tokens=len(ids), completion_tokens=result.tokens, total_tokens=len(ids) + result.tokens)


async def _complete(runtime: Any, ids: list[int], body: OAISampling, max_new: int) -> tuple[str, Generated]:
    """The whole text as generated (not stripped: a completion continues its prompt exactly), and the result."""
    pieces: list[str] = []
    async with _adapter(runtime, body.model) as adapter:
        async for item in runtime.generate(
            ids, body.sampling(max_new), stop=body.stops, seed=body.seed, adapter=adapter, user=API_CLIENT
        ):
            if isinstance(item, Generated):
                return "".join(pieces), item
            pieces.append(item)
    raise RuntimeError("generation ended without a result")


async def _events(
    runtime: Any,
    ids: list[int],
    body: OAISampling,
    max_new: int,
    choice: Callable[..., dict[str, Any]],
    *,
    opening: bool,
) -> AsyncIterator[tuple[list[dict[str, Any]], OAIUsage | None]]:
    """Each chunk's choices (an opening one where the format has it, the text, the finish), then the usage
    in a chunk of its own when the client asked for it."""
    async with _adapter(runtime, body.model) as adapter:
        if opening:
            yield [choice(None)], None
        async for item in runtime.generate(
            ids, body.sampling(max_new), stop=body.stops, seed=body.seed, adapter=adapter, user=API_CLIENT
        ):
            if not isinstance(item, Generated):
                yield [choice(item)], None
                continue
            yield [choice("", _finish(item))], None
            if body.include_usage:
                yield [], _usage(ids, item)


def _sse(
    events: AsyncIterator[tuple[list[dict[str, Any]], OAIUsage | None]],
    cid: str,
    kind: str,
    created: int,
    model: str,
    slot: Slot,
) -> EventStream:
    """OpenAI's stream: a `data:` line per chunk, an error as a chunk of its own (as vLLM does), then [DONE]."""

    async def chunks() -> AsyncIterator[str]:
        async for choices, usage in events:
            payload: dict[str, Any] = {"id": cid, "object": kind, "created": created, "model": model}
            payload["choices"] = choices
            if usage is not None:
                payload["usage"] = usage.model_dump()
            yield json_line(payload)

    async def lines() -> AsyncIterator[str]:
        async for line in events_or_error(chunks(), lambda error: f"data: {error}\n\n"):
            yield line
        yield "data: [DONE]\n\n"

    return EventStream(lines(), slot)
