"""POST /v1/chat: one message in, one reply out (whole, or streamed as server-sent events)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from brain import personas as persona_lib
from brain.api_models import ChatKind, ChatReply, ChatRequest, ErrorBody, SamplingParams
from brain.prompt import build_prompt
from brain.service.auth import Authorized
from brain.service.deps import RuntimeDep
from brain.service.errors import STORAGE_DOWN, ApiError
from brain.service.runtime import Generated, Runtime
from brain.store import ChatState

router = APIRouter(dependencies=[Authorized], tags=["chat"])

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 413, 422, 429, 503)}


def check_text(runtime: Runtime, text: str) -> None:
    if not text.strip():
        raise ApiError(400, "empty_message", "The message is empty; send some text.")
    limit = runtime.settings.limits.max_message_chars
    if len(text) > limit:
        raise ApiError(413, "message_too_long", f"The message has {len(text)} characters; at most {limit} are allowed.")


def check_rate(runtime: Runtime, state: ChatState) -> None:
    limit = runtime.settings.limits.rate_per_minute
    if state.requests_this_window > limit:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many messages: at most {limit} a minute. Try again in {state.window_left_s} s.",
            {"Retry-After": str(state.window_left_s)},
        )


def sampling_for(persona_sampling: SamplingParams, overrides: dict[str, Any] | None, cap: int) -> SamplingParams:
    """The persona's sampling with the request's overrides; model.max_new_tokens caps the reply length."""
    values = {**persona_sampling.model_dump(), **(overrides or {})}
    values["max_new_tokens"] = min(int(values["max_new_tokens"]), cap)
    try:
        return SamplingParams.model_validate(values)
    except ValueError as exc:
        raise ApiError(422, "invalid_sampling", f"The sampling overrides are not valid: {exc}") from exc


@router.post("/v1/chat", response_model=ChatReply, responses=ERRORS)
async def chat(body: ChatRequest, request: Request, runtime: RuntimeDep) -> Any:
    """Answer one message with the user's memory and persona; stream it with `"stream": true`."""
    started = time.perf_counter()
    check_text(runtime, body.text)
    runtime.check_free_slot()
    user = body.key
    group = body.chat_kind is ChatKind.group
    state = await runtime.store.load_chat_state(user, body.platform, body.chat_id, group)
    check_rate(runtime, state)

    stored = state.chat_persona if group else state.user_persona
    persona, _ = persona_lib.resolve(stored, runtime.presets, runtime.settings.brain.default_persona)
    sampling = sampling_for(persona.sampling, body.sampling, runtime.settings.model.max_new_tokens)
    if sampling.num_beams > 1 and (body.stream or runtime.remote is not None):
        raise ApiError(
            400, "beam_not_streamable", "Beam search works only for non-streaming requests on the local engine."
        )
    try:
        prompt = build_prompt(
            runtime.tokenizer,
            system_prompt=persona.system_prompt,
            summary=state.summary,
            turns=state.turns,
            text=body.text,
            budget=runtime.prompt_budget(sampling.max_new_tokens),
            context=body.context,
        )
    except ValueError as exc:
        raise ApiError(413, "message_too_long", str(exc)) from exc

    async def produce() -> AsyncIterator[str | Generated | ChatReply]:
        async with runtime.slots, runtime.adapters.serving(user, state.profile) as adapter:
            result: Generated | None = None
            async for item in runtime.generate(prompt.ids, sampling, adapter=adapter):
                if isinstance(item, Generated):
                    result = item
                else:
                    yield item
            assert result is not None
            if result.finish_reason == "cancelled":
                runtime.metrics.replies.labels("cancelled").inc()
                return
            now = time.time()
            user_turn = {"role": "user", "text": body.text, "ts": now, "tokens": runtime.count(body.text)}
            reply_turn = {"role": "assistant", "text": result.text, "ts": now, "tokens": result.tokens}
            record = await runtime.store.record_turn(
                user,
                body.chat_id,
                since=state.since,
                user_turn=user_turn,
                assistant_turn=reply_turn,
                max_turns=runtime.settings.memory.max_turns,
                max_tokens=runtime.settings.memory.max_tokens,
                ttl_s=runtime.settings.memory.ttl_s,
                display_name=body.display_name,
                persona=persona.name,
            )
            if record.evicted:
                runtime.fold_in_background(user, body.chat_id, state.summary, record.evicted)
            runtime.metrics.replies.labels("ok").inc()
            runtime.metrics.request_latency.labels("chat").observe(time.perf_counter() - started)
            yield ChatReply(
                reply=result.text,
                persona=persona.name,
                tokens=result.tokens,
                finish_reason=result.finish_reason,  # type: ignore[arg-type]
                logged=record.logged,
                adapter=adapter,
            )

    if body.stream:
        return StreamingResponse(_sse(produce(), request), media_type="text/event-stream")
    async for item in produce():
        if isinstance(item, ChatReply):
            return item
    raise ApiError(503, "cancelled", "The reply was cancelled before it finished.")


async def _sse(items: AsyncIterator[Any], request: Request) -> AsyncIterator[str]:
    try:
        async for item in items:
            if isinstance(item, ChatReply):
                yield f"event: done\ndata: {item.model_dump_json()}\n\n"
            else:
                yield f"event: delta\ndata: {json.dumps({'delta': item})}\n\n"
    except RedisError:
        request.app.state.runtime.metrics.redis_errors.inc()
        error = {"error": {"code": "storage_unavailable", "message": STORAGE_DOWN}}
        yield f"event: error\ndata: {json.dumps(error)}\n\n"
