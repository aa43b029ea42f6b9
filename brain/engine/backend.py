"""The one interface the service generates through, whichever engine does the work.

    backend = LocalBackend(engine, tokenizer)         # continuous batching in this process
    backend = RemoteEngine(url, ...)                  # an OpenAI-compatible server such as vLLM
    async for item in backend.generate(prompt_ids, sampling, stop=[...], seed=1, adapter="community@3"):
        ...                                           # str deltas, then one Generated

The service (brain/service/runtime.py) holds a ``GenerationBackend`` and never asks which one it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from brain.api_models import DEFAULT_DRY_BREAKERS, SamplingParams
from brain.engine.batching import Engine, GenerationRequest
from brain.engine.sampling import Dry, breaker_token_ids
from brain.engine.scheduler import Priority
from brain.engine.text import TextStream

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FinishReason = Literal["stop", "length", "cancelled"]
_ENDINGS: dict[str | None, FinishReason] = {"stop": "stop", "length": "length"}


@dataclass(frozen=True)
class Generated:
    """The end of one generation: the whole reply (stripped), its token count and why it ended."""

    text: str
    tokens: int  # generated tokens, the stop token excluded
    finish_reason: FinishReason  # "stop": end of turn or a stop string; "cancelled": the consumer left


class GenerationBackend(Protocol):
    """What the service needs of an engine."""

    @property
    def running(self) -> bool:
        """Ready to generate (the local worker runs; the remote server answered its last probe)."""
        ...

    @property
    def active(self) -> int:
        """Requests being generated now."""
        ...

    @property
    def waiting(self) -> int:
        """Requests queued for a free row."""
        ...

    @property
    def supports_beam_search(self) -> bool: ...

    def start(self) -> None:
        """Start serving; call from the running event loop."""
        ...

    async def aclose(self) -> None: ...

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
    ) -> AsyncIterator[str | Generated]:
        """Text deltas as they are generated, then one Generated; leaving early cancels the request.

        ``user``: whose conversation the prompt holds, so that ``forget(user)`` can drop what it left cached;
        ``contributors``: other members whose words it holds, whose forget drops it too.
        ``priority``: ``"background"`` for work no member waits for (summary folds, fact extraction), which
        gets only what members' replies leave of the engine.
        ``public_prefix``: how many of the first prompt ids every member of the persona sends alike (its system
        prompt); past them, what another user left cached must not be reused."""
        ...

    async def forget(self, user: str) -> None:
        """Drop whatever the engine keeps of ``user``'s prompts (cached keys and values) now."""
        ...


class LocalBackend:
    """The in-process engine (brain/engine/batching.py) behind the backend interface: it turns the engine's
    token ids into text (with stop strings) and serves beam search."""

    supports_beam_search = True

    def __init__(self, engine: Engine, tokenizer: PreTrainedTokenizerBase) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        # DRY's breakers are strings, its penalties are on token ids: each token's text, decoded once here
        self._vocabulary: list[str] = tokenizer.batch_decode([[index] for index in range(len(tokenizer))])
        self._breakers: dict[tuple[str, ...], frozenset[int]] = {}
        self._breaker_ids(DEFAULT_DRY_BREAKERS)

    def _breaker_ids(self, breakers: tuple[str, ...]) -> frozenset[int]:
        if breakers not in self._breakers:
            if len(self._breakers) >= 64:  # requests may name any breakers: keep the most recent sets only
                self._breakers.pop(next(iter(self._breakers)))
            self._breakers[breakers] = breaker_token_ids(self._vocabulary, breakers)
        return self._breakers[breakers]

    def dry(self, sampling: SamplingParams, prompt_length: int) -> Dry | None:
        """The request's DRY settings in token ids; None where DRY is off (fields left unset are off here:
        the runtime fills them from the model profile first)."""
        if not sampling.dry_multiplier:
            return None
        breakers = sampling.dry_sequence_breakers
        return Dry(
            multiplier=sampling.dry_multiplier,
            base=sampling.dry_base if sampling.dry_base is not None else Dry.base,
            allowed_length=sampling.dry_allowed_length or Dry.allowed_length,
            penalty_last_n=sampling.dry_penalty_last_n if sampling.dry_penalty_last_n is not None else -1,
            breaker_ids=self._breaker_ids(tuple(DEFAULT_DRY_BREAKERS if breakers is None else breakers)),
            skip=prompt_length if sampling.dry_reply_only else 0,
        )

    @property
    def running(self) -> bool:
        return self.engine.running

    @property
    def active(self) -> int:
        return self.engine.active

    @property
    def waiting(self) -> int:
        return self.engine.waiting

    def start(self) -> None:
        self.engine.start()

    async def aclose(self) -> None:
        self.engine.stop()

    async def forget(self, user: str) -> None:
        await self.engine.forget(user)

    async def generate(
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
    ) -> AsyncIterator[str | Generated]:
        if sampling.num_beams > 1:
            yield await self._beam_search(prompt_ids, sampling, adapter)
            return
        request = GenerationRequest(
            prompt_ids=prompt_ids,
            max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            repetition_penalty=sampling.repetition_penalty,
            seed=seed,
            adapter=adapter,
            owner=user,
            contributors=contributors,
            priority=priority,
            public_prefix=public_prefix,
            dry=self.dry(sampling, len(prompt_ids)),
        )
        stream = TextStream(self.engine.submit(request), self.tokenizer, stop=stop or ())
        try:
            async for delta in stream:
                yield delta
        finally:
            stream.cancel()
        reason = _ENDINGS.get(stream.finish_reason, "cancelled")
        yield Generated(text=stream.text.strip(), tokens=len(stream.token_ids), finish_reason=reason)

    async def _beam_search(self, prompt_ids: list[int], sampling: SamplingParams, adapter: str | None) -> Generated:
        request = GenerationRequest(
            prompt_ids=prompt_ids,
            max_new_tokens=sampling.max_new_tokens,
            repetition_penalty=sampling.repetition_penalty,
            adapter=adapter,
            dry=self.dry(sampling, len(prompt_ids)),
        )
        ids = await self.engine.beam_search(request, sampling.num_beams)
        text = str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()
        reason: FinishReason = "length" if len(ids) >= request.max_new_tokens else "stop"
        return Generated(text=text, tokens=len(ids), finish_reason=reason)
