"""vLLM's side of the protocol that ``model.engine: vllm`` speaks, served by a real brain with the tiny model.

A second brain (its own engine, the tiny model) gets the routes a vLLM server adds to the OpenAI API:
``/v1/completions`` with token-id prompts, streamed, with vLLM's rules for the ``model`` field (the base
model or a loaded LoRA adapter's name, else 404), and ``/v1/load_lora_adapter`` / ``/v1/unload_lora_adapter``.
The adapter endpoints are the test double: they keep the names and paths they were given (the brain's
engine serves the base model only), refuse a name already loaded as vLLM does, and check that the path holds
an adapter. Every completion request is recorded, so tests see which model name each one carried.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from brain.api_models import SamplingParams
from brain.service.auth import Authorized
from brain.service.deps import RuntimeDep
from brain.service.runtime import Generated


@dataclass
class ServerLog:
    """What the server was asked: adapters loaded (name -> path), loads and unloads, and request models."""

    adapters: dict[str, str] = field(default_factory=dict)
    loads: list[str] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)
    completion_models: list[str] = field(default_factory=list)
    completion_bodies: list[dict[str, Any]] = field(default_factory=list)

    def restart(self) -> None:
        """What a vLLM restart does to adapters loaded at run time: they are gone."""
        self.adapters.clear()


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def add_vllm_routes(app: FastAPI) -> ServerLog:
    """Add the routes to ``app`` (a brain app) and return the log that they fill."""
    server = ServerLog()
    router = APIRouter(dependencies=[Authorized])

    @router.post("/v1/load_lora_adapter")
    async def load_lora_adapter(body: dict[str, Any]) -> Any:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "lora_name and lora_path are required", "BadRequestError")
        if name in server.adapters:
            return _error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
        if not (Path(path) / "adapter_config.json").is_file():
            return _error(404, f"No adapter found at {path}", "NotFoundError")
        server.adapters[name] = path
        server.loads.append(name)
        return f"Success: LoRA adapter '{name}' added successfully."

    @router.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(body: dict[str, Any]) -> Any:
        name = body.get("lora_name")
        if name not in server.adapters:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del server.adapters[name]
        server.unloads.append(name)
        return f"Success: LoRA adapter '{name}' removed successfully."

    @router.post("/v1/completions")
    async def completions(body: dict[str, Any], request: Request, runtime: RuntimeDep) -> Any:
        model = body.get("model")
        server.completion_models.append(model)
        server.completion_bodies.append(body)
        if model != runtime.model_name and model not in server.adapters:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        prompt = body.get("prompt")
        if not isinstance(prompt, list) or not all(isinstance(i, int) for i in prompt):
            return _error(400, "this server takes prompts as lists of token ids", "BadRequestError")
        sampling = SamplingParams(
            temperature=body.get("temperature", 1.0),
            top_p=body.get("top_p", 1.0),
            top_k=max(body.get("top_k", 0), 0),
            repetition_penalty=body.get("repetition_penalty", 1.0),
            max_new_tokens=body.get("max_tokens", 16),
        )
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        stream = _stream(runtime, model, prompt, sampling, stop, body.get("seed"))
        if body.get("stream"):
            return StreamingResponse(stream, media_type="text/event-stream")
        chunks = [json.loads(line[len("data: ") :]) async for line in stream if not line.startswith("data: [DONE]")]
        text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
        finish = next(c["choices"][0]["finish_reason"] for c in reversed(chunks) if c["choices"])
        choice = {"index": 0, "text": text, "finish_reason": finish}
        return {"object": "text_completion", "model": model, "choices": [choice], "usage": chunks[-1]["usage"]}

    app.include_router(router)
    return server


async def _stream(
    runtime: Any, model: str, prompt: list[int], sampling: SamplingParams, stop: list[str], seed: int | None
) -> AsyncIterator[str]:
    cid, created = f"cmpl-{uuid.uuid4().hex[:12]}", int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        payload = {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": choices}
        if usage is not None:
            payload["usage"] = usage
        return f"data: {json.dumps(payload)}\n\n"

    async for item in runtime.generate(prompt, sampling, stop=stop, seed=seed):
        if isinstance(item, Generated):
            finish = "length" if item.finish_reason == "length" else "stop"
            yield chunk([{"index": 0, "text": "", "finish_reason": finish}])
            usage = {"prompt_tokens": len(prompt), "completion_tokens": item.tokens}
            yield chunk([], {**usage, "total_tokens": usage["prompt_tokens"] + item.tokens})
        else:
            yield chunk([{"index": 0, "text": item, "finish_reason": None}])
    yield "data: [DONE]\n\n"
