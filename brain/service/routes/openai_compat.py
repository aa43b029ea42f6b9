"""An OpenAI-compatible /v1/chat/completions over the same engine: stateless, no memory, no logging."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from brain.api_models import OAIChatRequest, OAIChatResponse, OAIChoice, OAIMessage, OAIUsage, SamplingParams
from brain.prompt import render
from brain.service.auth import Authorized
from brain.service.deps import RuntimeDep
from brain.service.errors import ApiError
from brain.service.runtime import Generated

router = APIRouter(dependencies=[Authorized], tags=["openai"])


@router.get("/v1/models")
async def models(runtime: RuntimeDep) -> dict[str, Any]:
    """The one served model, OpenAI style."""
    return {"object": "list", "data": [{"id": runtime.model_name, "object": "model", "owned_by": "ownchat"}]}


@router.post("/v1/chat/completions", response_model=OAIChatResponse)
async def chat_completions(body: OAIChatRequest, runtime: RuntimeDep) -> Any:
    """Chat completions for any OpenAI client (streaming with `stream: true`)."""
    max_new = body.max_completion_tokens or body.max_tokens or runtime.settings.model.max_new_tokens
    sampling = SamplingParams(
        temperature=min(body.temperature, 5.0), top_p=body.top_p, top_k=0, repetition_penalty=1.0,
        max_new_tokens=max_new,
    )  # fmt: skip
    ids = render(runtime.tokenizer, [m.model_dump() for m in body.messages])
    budget = runtime.prompt_budget(max_new)
    if len(ids) > budget:
        message = f"The messages take {len(ids)} tokens; at most {budget} fit with max_tokens={max_new}."
        raise ApiError(413, "context_length_exceeded", message)
    if runtime.slots.locked():
        raise ApiError(503, "busy", "The brain is at its limit of concurrent requests; retry shortly.",
                       {"Retry-After": "1"})  # fmt: skip
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())

    if body.stream:
        return StreamingResponse(
            _stream(runtime, ids, sampling, stop, body.seed, completion_id, created),
            media_type="text/event-stream",
        )
    async with runtime.slots:
        result = await runtime.complete(ids, sampling, stop=stop, seed=body.seed)
    return OAIChatResponse(
        id=completion_id,
        created=created,
        model=runtime.model_name,
        choices=[
            OAIChoice(
                message=OAIMessage(role="assistant", content=result.text),
                finish_reason="length" if result.finish_reason == "length" else "stop",
            )
        ],
        usage=OAIUsage(prompt_tokens=len(ids), completion_tokens=result.tokens, total_tokens=len(ids) + result.tokens),
    )


async def _stream(
    runtime: Any,
    ids: list[int],
    sampling: SamplingParams,
    stop: list[str],
    seed: int | None,
    cid: str,
    created: int,
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        payload = {
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": runtime.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }  # fmt: skip
        return f"data: {json.dumps(payload)}\n\n"

    async with runtime.slots:
        yield chunk({"role": "assistant", "content": ""})
        async for item in runtime.generate(ids, sampling, stop=stop, seed=seed):
            if isinstance(item, Generated):
                yield chunk({}, "length" if item.finish_reason == "length" else "stop")
            else:
                yield chunk({"content": item})
    yield "data: [DONE]\n\n"
