"""Generation on an external OpenAI-compatible server (vLLM) instead of in-process transformers.

The brain keeps building every prompt with the model's own tokenizer, so budgets stay exact, and sends the
token ids to the server's ``/v1/completions`` (vLLM takes a list of ids as ``prompt``); the reply streams
back as text. Only the tokenizer and the config are loaded here: no weights, no GPU.

LoRA adapters: each promoted adapter version is loaded under a name of its own (``community@7``, the name
:mod:`brain.adapters` gives it) with vLLM's ``/v1/load_lora_adapter``, and requests name it as the ``model``.
A new version never reuses a name, so the server cannot answer from a stale cached copy of an older one.
Loading is idempotent across brain replicas (the second replica's "already loaded" is success), and an
adapter the server lost (it restarted) is loaded again on the 404 of the first request that names it. The
vLLM server needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and ``--enable-lora``, and must see the adapter
directories at the same paths as the brain (mount the registry volume at the same place in both).
:mod:`brain.engine.remote_adapters` picks the adapter of each request.

    engine = RemoteEngine("http://vllm:8000", api_key=None, stop_token_ids={2})
    engine.start()                          # inside the running event loop
    async for item in engine.generate(ids, sampling, adapter=AdapterRef("community", 7, "/registry/...")):
        ...                                 # str deltas, then one Generated
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from brain.api_models import SamplingParams
from brain.engine.backend import FinishReason, Generated
from brain.engine.scheduler import Priority

log = logging.getLogger("brain.remote")


class RemoteEngineError(RuntimeError):
    """The generation server is unreachable, or refused a request; the message says which and why."""


class ServerUnreachable(RemoteEngineError):
    """No answer from the generation server (down, or a wrong address)."""


@dataclass(frozen=True)
class AdapterRef:
    """One immutable adapter version of the registry: its target, its version and its directory."""

    target: str
    version: int
    path: str

    @property
    def served_name(self) -> str:
        """The name the server knows this version by; never reused for another version."""
        from brain.adapters import adapter_name

        return adapter_name(self.target, self.version)


class RemoteEngine:
    """A GenerationBackend (brain/engine/backend.py) that streams completions from an OpenAI-compatible
    server such as vLLM."""

    supports_beam_search = False

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        stop_token_ids: Iterable[int] = (),
        timeout_s: float = 120.0,
        probe_interval_s: float = 5.0,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.api_key = api_key
        self.stop_token_ids = sorted(set(stop_token_ids))
        self.timeout_s = timeout_s
        self.probe_interval_s = probe_interval_s
        self.base_model: str | None = None
        self.active = 0
        self.waiting = 0  # the server queues; nothing waits on this side
        self._reachable = False
        self._client: httpx.AsyncClient | None = None
        self._probe: asyncio.Task[None] | None = None
        self._known: dict[str, AdapterRef] = {}  # served name -> its version, for every name ever loaded here
        self._loaded: set[str] = set()  # names the server holds, as far as this brain knows
        self._load_locks: dict[str, asyncio.Lock] = {}

    @property
    def running(self) -> bool:
        """Started, and the server answered its last probe with a model to serve."""
        return self._probe is not None and self._reachable and self.base_model is not None

    def start(self) -> None:
        """Open the connection pool and probe the server in the background; call inside the event loop."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.timeout_s, connect=5.0)
        )
        self._probe = asyncio.get_running_loop().create_task(self._probe_forever())

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    async def forget(self, user: str) -> None:
        """Nothing to drop here: what the server caches is its own (vLLM's prefix cache has no owners)."""

    async def aclose(self) -> None:
        self.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # generation

    async def generate(
        self,
        prompt_ids: list[int],
        sampling: SamplingParams,
        *,
        stop: list[str] | None = None,
        seed: int | None = None,
        adapter: AdapterRef | str | None = None,
        user: str | None = None,
        contributors: frozenset[str] = frozenset(),
        priority: Priority = "member",
        public_prefix: int = 0,
    ) -> AsyncIterator[str | Generated]:
        """Text deltas as the server streams them, then one Generated.

        ``adapter``: a version to serve with, or the served name of one loaded with ``ensure_adapter``.
        ``user``, ``contributors`` and ``public_prefix`` are not sent: the server's own prefix cache is keyed by
        content and shared (deploy/README.md says what that means for a vLLM server).
        ``priority`` is not sent either: vLLM refuses a request priority unless it was started with
        ``--scheduling-policy priority``, so background work there queues like a member's reply.
        """
        if isinstance(adapter, str):
            if adapter not in self._known:
                raise RemoteEngineError(f"adapter {adapter!r} was never loaded into {self.base_url}")
            adapter = self._known[adapter]
        model = await self.ensure_adapter(adapter) if adapter else await self._base_model()
        body = self._completion_body(model, prompt_ids, sampling, stop or [], seed)
        self.active += 1
        try:
            for attempt in (1, 2):
                started = False
                try:
                    async for item in self._stream(body):
                        started = True
                        yield item
                    return
                except _UnknownModel:
                    # the server forgot the adapter (it restarted): load it again, then retry once
                    if adapter is None or started or attempt == 2:
                        raise RemoteEngineError(
                            f"the generation server at {self.base_url} does not know the model {model!r}"
                        ) from None
                    self._loaded.discard(model)
                    await self.ensure_adapter(adapter)
        finally:
            self.active -= 1

    def _completion_body(
        self, model: str, prompt_ids: list[int], sampling: SamplingParams, stop: list[str], seed: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt_ids,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            # vLLM's extensions of the OpenAI parameters; other servers ignore what they do not know
            "skip_special_tokens": True,
            "stop_token_ids": self.stop_token_ids,
        }
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty
        if sampling.dry_multiplier:  # llama.cpp's server knows DRY under these names; vLLM ignores them
            body.update(sampling.dry_values())
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        return body

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[str | Generated]:
        client = self._require_client()
        text, chunks, usage_tokens = [], 0, None
        finish: FinishReason = "stop"
        try:
            async with client.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    if response.status_code == 404 and "does not exist" in response.text:
                        raise _UnknownModel()
                    raise RemoteEngineError(
                        f"the generation server at {self.base_url} refused the request "
                        f"({response.status_code}): {_error_message(response)}"
                    )
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("error"):
                        raise RemoteEngineError(f"the generation server failed: {_describe(chunk['error'])}")
                    if chunk.get("usage"):
                        usage_tokens = chunk["usage"].get("completion_tokens")
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("text") or ""
                        if delta:
                            chunks += 1
                            text.append(delta)
                            yield delta
                        if choice.get("finish_reason"):
                            finish = "length" if choice["finish_reason"] == "length" else "stop"
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._reachable = True
        tokens = usage_tokens if usage_tokens is not None else chunks
        yield Generated(text="".join(text).strip(), tokens=tokens, finish_reason=finish)

    # adapters

    async def ensure_adapter(self, adapter: AdapterRef) -> str:
        """Load ``adapter`` into the server under its versioned name unless it is there; return the name."""
        name = adapter.served_name
        if name in self._loaded:
            return name
        lock = self._load_locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._loaded:
                return name
            response = await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": adapter.path})
            if response.status_code >= 400 and "already" not in response.text:
                raise RemoteEngineError(
                    f"the generation server at {self.base_url} could not load adapter {name!r} from "
                    f"{adapter.path} ({response.status_code}): {_error_message(response)}"
                )
            self._loaded.add(name)
            self._known[name] = adapter
            log.info("adapter %s loaded into %s", name, self.base_url)
            return name

    def loaded_adapters(self, target: str) -> list[str]:
        """The served names of the versions of ``target`` that this brain loaded into the server."""
        return [name for name, ref in self._known.items() if ref.target == target]

    async def unload_adapter(self, name: str) -> None:
        """Drop an adapter from the server (a forgotten user's, or one no replica serves any more)."""
        self._loaded.discard(name)
        self._known.pop(name, None)
        response = await self._post("/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code >= 400 and response.status_code != 404:  # 404: it was not loaded there
            raise RemoteEngineError(
                f"the generation server at {self.base_url} could not unload adapter {name!r} "
                f"({response.status_code}): {_error_message(response)}"
            )

    # the server's models and health

    async def _base_model(self) -> str:
        if self.base_model is None:
            await self._discover()
        if self.base_model is None:
            raise RemoteEngineError(f"the generation server at {self.base_url} lists no model to serve")
        return self.base_model

    async def _discover(self) -> None:
        try:
            response = await self._require_client().get("/v1/models")
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code != 200:
            self._reachable = False
            raise RemoteEngineError(
                f"the generation server at {self.base_url} answered {response.status_code} to /v1/models: "
                f"{_error_message(response)}"
            )
        self._reachable = True
        models = response.json().get("data") or []
        # vLLM lists loaded LoRA adapters beside the base model, each with the base as its parent
        bases = [m["id"] for m in models if not m.get("parent")]
        self.base_model = bases[0] if bases else None

    async def _probe_forever(self) -> None:
        while True:
            try:
                await self._discover()
            except RemoteEngineError as exc:
                log.warning("%s", exc)
            await asyncio.sleep(self.probe_interval_s)

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._require_client().post(path, json=body)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: httpx.TransportError) -> ServerUnreachable:
        self._reachable = False
        return ServerUnreachable(
            f"the generation server at {self.base_url} is unreachable ({type(exc).__name__}); "
            "check model.vllm_url and that the server is up"
        )

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RemoteEngineError("the remote engine is not started; call start() first")
        return self._client


class _UnknownModel(Exception):
    """The server answered 404 for the requested model name."""


def normalize_base_url(url: str) -> str:
    """``http://vllm:8000``, ``http://vllm:8000/`` and ``http://vllm:8000/v1`` all name the same server."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"model.vllm_url must start with http:// or https://, not {url!r}")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    return _describe(payload.get("error", payload) if isinstance(payload, dict) else payload)


def _describe(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:300]
    return str(error)[:300]


def load_tokenizer_only(name: str, *, cache_dir: str | Path) -> Any:
    """What the brain needs of the model when another server runs it: tokenizer, end-of-turn ids, context length.

    Returns a ``LoadedModel`` whose ``model`` is None; nothing is put on a device.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from brain.engine.model_loading import LoadedModel, context_length, eos_token_ids, resolve_model

    path = resolve_model(name, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    try:
        generation_config = GenerationConfig.from_pretrained(path)
    except OSError:  # no generation_config.json: the config's own eos id is enough
        generation_config = None
    # eos_token_ids reads only these two attributes of a model
    shape = SimpleNamespace(config=config, generation_config=generation_config)
    return LoadedModel(
        model=None,  # type: ignore[arg-type]
        tokenizer=tokenizer,
        device=torch.device("cpu"),
        dtype=torch.float32,
        name=name,
        eos_token_ids=eos_token_ids(shape, tokenizer),  # type: ignore[arg-type]
        context_length=context_length(config),
    )
