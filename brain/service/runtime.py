"""What one brain process holds while it runs: settings, the Redis store, the model and its engine."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from redis.exceptions import RedisError

from brain import personas as persona_lib
from brain.adapters import AdapterBackend, AdapterManager
from brain.api_models import SamplingParams
from brain.engine.backend import Generated, GenerationBackend, LocalBackend
from brain.engine.batching import Engine
from brain.engine.model_loading import LoadedModel, load_serving_model
from brain.engine.remote import RemoteEngine, load_tokenizer_only
from brain.engine.remote_adapters import RemoteAdapters
from brain.engine.scheduler import Priority
from brain.memory.records import BackgroundPrompt
from brain.memory.service import MemoryService
from brain.prompt import count_tokens, render
from brain.service.admission import Admission
from brain.service.metrics import Metrics
from brain.settings import Settings
from brain.store import Store
from brain.store.client import connect

log = logging.getLogger("brain")
T = TypeVar("T")


class Runtime:
    """The brain's parts, built once at start-up (``Runtime.create``) and shared by every request."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        loaded: LoadedModel,
        backend: GenerationBackend,
        adapters: AdapterBackend,
        metrics: Metrics,
    ):
        self.settings = settings
        self.store = store
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.backend = backend
        self.adapters = adapters
        self.metrics = metrics
        self.metrics.watch_engine(lambda: self.backend.waiting, lambda: self.backend.active)
        self.presets = persona_lib.load_presets(settings.brain.personas_dir)
        if settings.brain.default_persona not in self.presets:
            raise persona_lib.PersonaError(f"the default persona '{settings.brain.default_persona}' is not a preset")
        self.context_tokens = min(settings.model.context_tokens, loaded.context_length)
        self.admission = Admission(
            settings.limits.max_concurrent, lambda outcome: self.metrics.admission_outcomes.labels(outcome).inc()
        )
        self.metrics.watch_admission(lambda: self.admission.in_use)
        if isinstance(backend, LocalBackend):
            prefixes = backend.engine.prefixes
            self.metrics.watch_prefix_cache(lambda: (prefixes.lookups, prefixes.hits, prefixes.reused_tokens))
        # tokenizing and rendering templates take milliseconds to seconds: never on the event loop. One thread,
        # because a fast tokenizer must not be used from two threads at once.
        self._text_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")
        self._rewrite: asyncio.Task[None] | None = None
        self.memory = MemoryService(
            store, lambda: self.settings.memory, self.answer_in_background, on_background=metrics.on_background
        )
        self.metrics.watch_background(lambda: len(self.memory.background))

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        """The one place that chooses the engine: in this process (model.engine: local), or on an external
        OpenAI-compatible server (model.engine: vllm), where only the tokenizer is loaded here."""
        password = settings.secrets.redis_password
        client = connect(
            settings.redis.url,
            cluster=settings.redis.cluster,
            password=password.get_secret_value() if password else None,
            timeout=settings.redis.socket_timeout_s,
        )
        store, metrics, trainer = Store(client), Metrics(), settings.trainer
        backend: GenerationBackend
        adapters: AdapterBackend
        if settings.model.engine == "vllm":
            loaded = load_tokenizer_only(settings.model.name, cache_dir=settings.model.cache_dir)
            vllm_key = settings.secrets.vllm_api_key
            remote = RemoteEngine(
                settings.model.vllm_url or "",
                api_key=vllm_key.get_secret_value() if vllm_key else None,
                stop_token_ids=loaded.eos_token_ids,
            )
            backend = remote
            adapters = RemoteAdapters(
                remote,
                store,
                registry_dir=trainer.registry_dir,
                base_model=settings.model.name,
                reconcile_s=trainer.reload_reconcile_s,
            )
        else:
            loaded = load_serving_model(
                settings.model.name,
                cache_dir=settings.model.cache_dir,
                device=settings.model.device,
                dtype=settings.model.dtype,
                cpu_weights=settings.model.cpu_weights,
            )
            engine = Engine(
                loaded.model,
                max_batch_size=settings.model.max_batch_size,
                eos_token_ids=loaded.eos_token_ids,
                device=loaded.device,
                context_length=loaded.context_length,
                on_step=metrics.on_step,
                on_background=metrics.on_background,
                kv_cache_tokens=settings.model.kv_cache_tokens,
                prefix_cache_mib=settings.model.prefix_cache_mib,
            )
            backend = LocalBackend(engine, loaded.tokenizer)
            adapters = AdapterManager(
                loaded.model,
                store,
                registry_dir=trainer.registry_dir,
                base_model=settings.model.name,
                capacity=trainer.adapter_cache_size,
                engine=engine,
                reconcile_s=trainer.reload_reconcile_s,
            )
        return cls(settings, store, loaded, backend, adapters, metrics)

    @property
    def api_key(self) -> str | None:
        key = self.settings.secrets.api_key
        return key.get_secret_value() if key else None

    @property
    def model_name(self) -> str:
        """The model's public name: a local directory is named by its last part, never by its path."""
        return public_model_name(self.loaded.name)

    def start(self) -> None:
        self.backend.start()
        self.adapters.start()

    async def stop(self) -> None:
        self.memory.stop()
        if self._rewrite is not None:
            self._rewrite.cancel()
        await self.adapters.stop()
        await self.backend.aclose()
        await self.store.close()
        self._text_worker.shutdown(wait=False, cancel_futures=True)

    async def off_loop(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run tokenizer work (counting, rendering, building a prompt) on the tokenizer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._text_worker, functools.partial(work, *args, **kwargs))

    def count(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    def prompt_budget(self, max_new_tokens: int) -> int:
        return max(self.context_tokens - max_new_tokens, 16)

    def generate(
        self,
        prompt_ids: list[int],
        sampling: SamplingParams,
        *,
        stop: list[str] | None = None,
        seed: int | None = None,
        adapter: str | None = None,
        user: str | None = None,
        contributors: frozenset[str] = frozenset(),
        priority: Priority = "member",
        public_prefix: int = 0,
        timed: bool = True,
    ) -> AsyncIterator[str | Generated]:
        """Text deltas as they are generated, then one Generated with the whole reply.

        ``priority="background"`` for work no member waits for: it runs in what members' replies leave, and its
        time to first token does not count in the metrics (nor does any with ``timed=False``)."""
        sampling = self.with_dry_defaults(sampling)
        stream = self.backend.generate(
            prompt_ids,
            sampling,
            stop=stop,
            seed=seed,
            adapter=adapter,
            user=user,
            contributors=contributors,
            priority=priority,
            public_prefix=public_prefix,
        )
        return self._timed(stream) if timed and priority == "member" else stream

    async def _timed(self, stream: AsyncIterator[str | Generated]) -> AsyncIterator[str | Generated]:
        started = time.perf_counter()
        waiting = True
        try:
            async for item in stream:
                if waiting and isinstance(item, str) and item:
                    self.metrics.time_to_first_token.observe(time.perf_counter() - started)
                    waiting = False
                yield item
        finally:
            # a client that leaves closes this wrapper; the engine's stream must hear it to free its slot
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    def with_dry_defaults(self, sampling: SamplingParams) -> SamplingParams:
        """``sampling`` with the DRY fields it leaves unset taken from model.dry (the model profile's, unless the
        operator set them): every route samples with the same defaults."""
        dry = self.settings.model.dry
        defaults = {
            "dry_multiplier": dry.multiplier,
            "dry_base": dry.base,
            "dry_allowed_length": dry.allowed_length,
            "dry_penalty_last_n": dry.penalty_last_n,
            "dry_sequence_breakers": list(dry.sequence_breakers),
            "dry_reply_only": dry.reply_only,
        }
        unset = {name: value for name, value in defaults.items() if getattr(sampling, name) is None}
        return sampling.model_copy(update=unset) if unset else sampling

    async def complete(self, prompt_ids: list[int], sampling: SamplingParams, **kw: Any) -> Generated:
        async for item in self.generate(prompt_ids, sampling, **kw):
            if isinstance(item, Generated):
                return item
        raise RuntimeError("generation ended without a result")

    async def answer_in_background(self, prompt: BackgroundPrompt) -> str:
        """What the model answers to memory's ``prompt`` (a summary fold, a fact extraction), generated as
        background work: in what members' replies leave of the engine."""
        ids = await self.off_loop(render, self.tokenizer, prompt.messages)
        if prompt.keep_end:
            ids = ids[-self.prompt_budget(prompt.sampling.max_new_tokens) :]
        result = await self.complete(ids, prompt.sampling, user=prompt.user, priority="background")
        return result.text

    # after a /forget: Redis's append-only file still holds what was deleted, until it is rewritten

    def rewrite_after_forget(self) -> None:
        """Have Redis rewrite its append-only file redis.rewrite_after_forget_s from now, unless a rewrite is
        already due: forgets in a burst share one rewrite (BGREWRITEAOF copies the whole data set)."""
        delay = self.settings.redis.rewrite_after_forget_s
        if delay <= 0 or (self._rewrite is not None and not self._rewrite.done()):
            return
        # not among memory's background jobs (which the metrics count): it mostly sleeps, and stop() cancels it
        self._rewrite = asyncio.create_task(self._rewrite_later(delay))

    async def _rewrite_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            # a forget during the rewrite (after it began copying) asks for another
            while await self.store.persistence.forgotten_since_rewrite():
                if not await self.store.persistence.rewrite():
                    return  # no append-only file: nothing on disk to rewrite
                log.info("Redis rewrote its append-only file after a forget")
        except (RedisError, OSError, RuntimeError, TimeoutError) as error:  # the nightly run tries again
            log.warning("Redis could not rewrite its append-only file after a forget: %s", error)


def public_model_name(name: str) -> str:
    """``name`` as clients may see it: a Hugging Face id or alias as it is, a local directory by its last part."""
    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) or path.exists():
        return path.resolve().name or "model"
    return name
