"""Continuous batching on token ids: requests join the running batch at step boundaries and leave when done.

A worker thread owns the model. Each turn of its loop it runs one decode step for every row, prefills
the new arrivals (several at once, left-padded) and adds them to the batch, retires finished and
cancelled rows, and hands each row's new token to its asyncio consumer (one call per event loop per
step). The batch's key/value cache, written in place and kept by each row's own length, lives in
:mod:`brain.engine.kv_cache`; token choice in :mod:`brain.engine.sampling`.

Prompts reuse what earlier requests computed: a finished request's keys and values go to a
:class:`~brain.engine.prefix_cache.PrefixCache` (``prefix_cache_mib``), and a new request of the
same adapter prefills only what follows the longest prefix it shares with one of them (the member's
previous prompt and reply, or their persona's system prompt). ``forget(owner)`` drops the entries of
a request's ``owner``. A request joins the batch once the tokens it may need (prompt and reply
budget) fit in ``kv_cache_tokens`` beside the running rows'.

    engine = Engine(model, max_batch_size=32, eos_token_ids={2}, device=torch.device("cpu"))
    engine.start()
    handle = engine.submit(GenerationRequest(prompt_ids=[...], max_new_tokens=64))
    async for token_id in handle:
        ...
    handle.finish_reason  # "stop", "length" or "cancelled"

Stop and EOS tokens end a reply and are not yielded. ``adapter`` on a request names a LoRA adapter
loaded in the model (a peft model holding several, see brain/adapters.py); each forward pass gets every
row's adapter name (``__base__`` for none), so one batch serves several adapters. Adapters are loaded
and unloaded through ``between_steps``, never while a step runs.

One request's failure is its own: settings that cannot be sampled (:class:`RequestError`) or a prompt
whose prefill fails (:class:`EngineError`) end that request while the other rows keep generating. Only
a failure of the shared decode step, which no row can be blamed for, ends every running request; the
engine itself keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import torch
from transformers import LogitsProcessorList, PreTrainedModel

from brain.engine.kv_cache import DecodePlan, KVShape, PrefillPlan, RowCache, use_rows_attention
from brain.engine.model_loading import context_length as config_context_length
from brain.engine.prefix_cache import PrefixCache, PrefixEntry
from brain.engine.sampling import (
    SEED_LIMIT,
    Dry,
    DryLogitsProcessor,
    RowSampler,
    SamplingError,
    make_sampler,
    pick_tokens,
)

log = logging.getLogger(__name__)
# prompt tokens (rows x longest prompt) prefilled in one forward pass
PREFILL_TOKEN_BUDGET = 4096
_END = object()
T = TypeVar("T")


class EngineError(RuntimeError):
    """Generation failed inside the engine, or the engine is not running."""


class RequestError(EngineError, ValueError):
    """This request's own settings cannot be served: it alone failed, and the engine goes on."""


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)
    seed: int | None = None
    adapter: str | None = None
    owner: str | None = None  # whose conversation this is: Engine.forget(owner) drops what it left cached
    # the other members whose words the prompt holds (a group persona's author): their forget drops it too
    contributors: frozenset[str] = field(default_factory=frozenset)
    # how many of the prompt's first tokens are public (the persona's system prompt): only so far may it reuse
    # what another owner's request left cached
    public_prefix: int = 0
    dry: Dry | None = None  # DRY sampling of this request alone (the other rows of its batch keep theirs)

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("prompt_ids is empty; a request needs at least one prompt token")
        if not all(isinstance(token, int) for token in self.prompt_ids):
            raise ValueError("prompt_ids must be integer token ids")
        for name in ("temperature", "top_p", "repetition_penalty"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, not {getattr(self, name)}")
        if self.seed is not None and not (isinstance(self.seed, int) and 0 <= self.seed < SEED_LIMIT):
            raise ValueError(f"seed must be an integer between 0 and 2**64 - 1, not {self.seed}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be 0 (greedy) or positive, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 (off) or positive, not {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be positive, not {self.repetition_penalty}")
        if self.dry is not None and not (
            math.isfinite(self.dry.multiplier) and self.dry.multiplier >= 0 and math.isfinite(self.dry.base)
        ):
            raise ValueError("dry multiplier must be 0 (off) or positive and dry base a finite number")
        self.stop_token_ids = frozenset(self.stop_token_ids)


class RequestHandle:
    """The consumer's side of a request: ``async for token_id in handle``, then ``finish_reason``.

    Iterate it from the event loop that submitted it. Cancelling the iterating task cancels the
    request; a consumer that stops iterating early should call ``cancel()``. If generation fails,
    iterating raises :class:`EngineError` (:class:`RequestError` where the request's own settings are
    at fault) and ``finish_reason`` is ``"error"``.
    """

    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
        self.request = request
        self.finish_reason: str | None = None
        self._loop = loop
        self._engine = engine
        self._queue: asyncio.Queue = asyncio.Queue()
        self.cancel_requested = False
        self.forgotten = False  # its owner was forgotten: what it computed is not kept

    def cancel(self) -> None:
        """Ask the engine to drop this request at its next step; it then finishes as ``cancelled``."""
        if not self.cancel_requested:
            self.cancel_requested = True
            self._engine._wake()

    def __aiter__(self) -> RequestHandle:
        return self

    async def __anext__(self) -> int:
        try:
            item = await self._queue.get()
        except asyncio.CancelledError:
            self.cancel()
            raise
        if item is _END:
            self._queue.put_nowait(_END)  # iterating again ends at once
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)
            raise item
        return item

    async def token_ids(self) -> list[int]:
        """Every generated id, once the request is finished."""
        return [token async for token in self]

    def _deliver(self, tokens: list[int], finish_reason: str | None, error: BaseException | None) -> None:
        for token in tokens:
            self._queue.put_nowait(token)
        if error is not None:
            self.finish_reason = "error"
            self._queue.put_nowait(error)
        elif finish_reason is not None:
            self.finish_reason = finish_reason
            self._queue.put_nowait(_END)


@dataclass
class StepEvent:
    """What one step means for one request, handed to its event loop: new tokens, and how it ended, if it did."""

    handle: RequestHandle
    tokens: list[int] = field(default_factory=list)  # generated this step (none when it stopped or failed)
    finish_reason: str | None = None  # "stop", "length" or "cancelled" once finished
    error: BaseException | None = None  # set when the request failed; the others in the batch go on


@dataclass(eq=False)
class _Row:
    handle: RequestHandle
    history: list[int]  # prompt then generated ids, for the repetition penalty
    sampler: RowSampler
    stop_ids: frozenset[int]
    budget: int  # new tokens allowed, capped by the context length
    generated: int = 0
    finished: bool = False
    failed: bool = False
    next_token: int = 0  # what the row feeds at the next decode step
    prefix: PrefixEntry | None = None  # the cached prefix it started from
    reused: int = 0  # prompt tokens taken from that prefix

    @property
    def reserved(self) -> int:
        """The cache tokens this row may come to hold."""
        return len(self.handle.request.prompt_ids) + self.budget


@dataclass
class _Job:
    run: Callable[[], object]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class Engine:
    """Serves many generation requests at once from one model with a shared, growing batch."""

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        max_batch_size: int,
        eos_token_ids: set[int] | frozenset[int],
        device: torch.device | str,
        context_length: int | None = None,
        on_step: Callable[[int, int], None] | None = None,
        kv_cache_tokens: int | None = None,
        prefix_cache_mib: float = 0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        # Any: a transformers model, or the peft model that wraps it once adapters load (see brain/adapters.py)
        self.model: Any = model
        self.max_batch_size = max_batch_size
        self.eos_token_ids = frozenset(eos_token_ids)
        self.device = torch.device(device)
        self.context_length = context_length or config_context_length(model.config)
        # a request alone may always run: the budget is at least one context
        self.kv_cache_tokens = max(kv_cache_tokens or max_batch_size * self.context_length, self.context_length)
        self.on_step = on_step
        self._shape = KVShape.of(model, self.device)
        self.prefixes = PrefixCache(int(prefix_cache_mib * 2**20) // self._shape.token_bytes())
        # an nn.Embedding's count, which torch types as it types any module attribute
        self._vocab_size = cast(int, model.get_input_embeddings().num_embeddings)
        self._condition = threading.Condition()
        self._queue: deque[RequestHandle] = deque()
        self._jobs: deque[_Job] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # the running batch, touched only by the worker thread; rows in the cache's batch order
        self._rows: list[_Row] = []
        self._cache = RowCache(self._shape, self.context_length)
        self._reserved = 0  # cache tokens the running rows may come to hold
        # prompt tokens admitted, and how many of them came from the prefix cache instead of a prefill
        self.prompt_tokens = 0
        self.reused_tokens = 0
        use_rows_attention(model)

    @property
    def active(self) -> int:
        """Rows in the running batch."""
        return len(self._rows)

    @property
    def waiting(self) -> int:
        """Requests queued for a free row."""
        return len(self._queue)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        if self._thread is not None:
            raise EngineError("the engine was already started; an engine runs once")
        self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the current step, end every pending request with ``cancelled`` and stop the worker."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def submit(self, request: GenerationRequest) -> RequestHandle:
        """Queue ``request``; call from a running event loop and iterate the handle there."""
        if not self.running:
            raise EngineError("the engine is not running; call start() first")
        if request.adapter is not None and request.adapter not in getattr(self.model, "peft_config", {}):
            raise ValueError(f"adapter {request.adapter!r} is not loaded in the model")
        if len(request.prompt_ids) >= self.context_length:
            raise ValueError(
                f"the prompt has {len(request.prompt_ids)} tokens; the model's context holds "
                f"{self.context_length}, including the reply"
            )
        outside = [token for token in request.prompt_ids if not 0 <= token < self._vocab_size]
        if outside:
            raise ValueError(f"prompt token id {outside[0]} is outside the model's vocabulary of {self._vocab_size}")
        handle = RequestHandle(request, _running_loop(), self)
        with self._condition:
            self._queue.append(handle)
            self._condition.notify()
        return handle

    async def between_steps(self, run: Callable[[], T]) -> T:
        """Run ``run`` on the worker thread between two steps: the time to change the model's adapters."""
        if not self.running:
            raise EngineError("the engine is not running; call start() first")
        loop = _running_loop()
        job = _Job(run, loop.create_future(), loop)
        with self._condition:
            self._jobs.append(job)
            self._condition.notify()
        return await job.future

    async def forget(self, owner: str) -> int:
        """Drop every cached prefix of ``owner`` now, and keep none of their requests still running;
        how many entries were dropped."""
        if not self.running:
            return self.prefixes.drop_owner(owner)
        return await self.between_steps(lambda: self._forget(owner))

    async def beam_search(self, request: GenerationRequest, num_beams: int) -> list[int]:
        """The best beam's new ids (without the final stop token), run between batch steps."""
        if num_beams < 1:
            raise ValueError(f"num_beams must be at least 1, not {num_beams}")
        if not self.running:
            raise EngineError("the engine is not running; call start() first")
        loop = _running_loop()
        job = _Job(lambda: self._beam_search(request, num_beams), loop.create_future(), loop)
        with self._condition:
            self._jobs.append(job)
            self._condition.notify()
        return await job.future

    # ---- worker thread -------------------------------------------------------------------------

    def _wake(self) -> None:
        with self._condition:
            self._condition.notify()

    def _run(self) -> None:
        with torch.no_grad():
            while True:
                with self._condition:
                    while not (self._stopping or self._queue or self._jobs or self._rows):
                        self._condition.wait()
                    if self._stopping:
                        break
                    jobs, self._jobs = list(self._jobs), deque()
                    finished = self._take_cancelled_from_queue()
                    arrivals = self._take_arrivals()
                for job in jobs:
                    self._run_job(job)
                events, ran = [StepEvent(handle, finish_reason="cancelled") for handle in finished], 0
                try:
                    step_events, ran = self._step(arrivals)
                    events += step_events
                except Exception as error:  # a failed step fails its rows, not the engine
                    log.exception("generation step failed; ending its %d requests", len(self._rows))
                    self._fail(list(dict.fromkeys([row.handle for row in self._rows] + arrivals)), error)
                self._publish(events)
                if ran:
                    self._report(ran, sum(len(event.tokens) for event in events))
            self._shut_down()

    def _take_cancelled_from_queue(self) -> list[RequestHandle]:
        cancelled = [handle for handle in self._queue if handle.cancel_requested]
        for handle in cancelled:
            self._queue.remove(handle)
        return cancelled

    def _take_arrivals(self) -> list[RequestHandle]:
        """The queued requests that fit now: a free row each, and their tokens within the cache budget."""
        arrivals: list[RequestHandle] = []
        reserved = self._reserved
        while self._queue and len(self._rows) + len(arrivals) < self.max_batch_size:
            request = self._queue[0].request
            need = min(len(request.prompt_ids) + request.max_new_tokens, self.context_length)
            if (self._rows or arrivals) and reserved + need > self.kv_cache_tokens:
                break  # first come, first served: it waits for rows to finish, and so do those behind it
            reserved += need
            arrivals.append(self._queue.popleft())
        return arrivals

    def _step(self, arrivals: list[RequestHandle]) -> tuple[list[StepEvent], int]:
        """Decode a token for every running row, prefill the arrivals, retire finished and failed rows.

        Returns the events to publish and the number of rows that produced a token."""
        ended = self._retire_cancelled()
        produced = self._decode() if self._rows else []
        if arrivals:
            joined, not_started = self._admit(arrivals)
            produced += joined
            ended += not_started
        events = ended + self._account(produced)
        self._retire([row for row in self._rows if row.finished])
        return events, sum(isinstance(token, int) for _, token in produced)

    def _retire_cancelled(self) -> list[StepEvent]:
        """Drop the rows cancelled since the last step before decoding them again; their events."""
        gone = [row for row in self._rows if row.handle.cancel_requested]
        self._retire(gone)
        return [StepEvent(row.handle, finish_reason="cancelled") for row in gone]

    def _report(self, rows: int, tokens: int) -> None:
        if self.on_step is None:
            return
        try:
            self.on_step(rows, tokens)
        except Exception:  # a metrics hook must not stop generation
            log.exception("on_step callback failed")

    def _decode(self) -> list[tuple[_Row, int | SamplingError]]:
        plan = self._cache.decode_plan()
        self._put_in_cache_order()
        rows = self._rows
        logits = self._forward(
            torch.tensor([[row.next_token] for row in rows], device=self.device), plan.positions(), plan, rows
        )
        self._cache.advance(plan)
        tokens = pick_tokens(logits, [row.sampler for row in rows], [row.history for row in rows])
        return list(zip(rows, tokens, strict=True))

    def _forward(
        self, ids: torch.Tensor, positions: torch.Tensor, plan: PrefillPlan | DecodePlan, rows: list[_Row]
    ) -> torch.Tensor:
        """The model's scores at each row's last position."""
        use_rows_attention(self.model)  # again: generate_batch and friends may have switched it
        return self.model(
            input_ids=ids,
            position_ids=positions,
            use_cache=False,
            logits_to_keep=1,
            rows_plan=plan,
            **self._adapter_names([row.handle.request for row in rows]),
        ).logits[:, -1]

    def _admit(self, arrivals: list[RequestHandle]) -> tuple[list[tuple[_Row, int | SamplingError]], list[StepEvent]]:
        """Prefill the arrivals in groups of similar length, then add them to the running batch.

        Returns each new row's first token and the failure events of requests that could not start."""
        rows, failed = [], []
        for handle in arrivals:
            try:
                rows.append(self._new_row(handle))
            except Exception as error:  # unusable settings: this request fails, the others start
                log.warning("a request could not start: %s", error)
                failed.append(StepEvent(handle, error=_row_error(error)))
        produced = []
        for row in rows:
            request = row.handle.request
            row.prefix, row.reused = self.prefixes.lookup(
                request.adapter, request.prompt_ids, request.owner, request.public_prefix
            )
        rows.sort(key=lambda row: (row.handle.request.adapter or "", len(row.handle.request.prompt_ids) - row.reused))
        for group in _prefill_groups(rows):
            joined, group_failed = self._join(group)
            produced += joined
            failed += group_failed
        self._put_in_cache_order()
        return produced, failed

    def _join(self, rows: list[_Row]) -> tuple[list[tuple[_Row, int | SamplingError]], list[StepEvent]]:
        """Prefill ``rows`` together into new rows of the batch; if that fails, each alone, so that only the
        request at fault fails. Returns each joined row's first token and the failure events."""
        try:
            first = self._prefill(rows)
        except Exception as error:
            self._cache.remove([row for row in rows if row in self._cache])
            if len(rows) == 1:
                log.exception("prefilling a request failed; it alone fails")
                return [], [StepEvent(rows[0].handle, error=_engine_error(error))]
            log.warning("prefilling %d requests together failed (%s); trying each alone", len(rows), error)
        else:
            self._rows += rows
            self._reserved += sum(row.reserved for row in rows)
            return list(zip(rows, first, strict=True)), []
        results = [self._join([row]) for row in rows]
        return [pair for joined, _ in results for pair in joined], [event for _, failed in results for event in failed]

    def _prefill(self, rows: list[_Row]) -> list[int | SamplingError]:
        """Put each row's reused prefix in place and run the rest of its prompt, left-padded with the
        others', through the model; each row's first new token."""
        news = [row.handle.request.prompt_ids[row.reused :] for row in rows]
        width = max(len(new) for new in news)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        positions = torch.zeros(len(rows), width, dtype=torch.long)
        for index, (row, new) in enumerate(zip(rows, news, strict=True)):
            ids[index, width - len(new) :] = torch.tensor(new)
            positions[index, width - len(new) :] = torch.arange(row.reused, row.reused + len(new))
            self._cache.add(row, len(row.handle.request.prompt_ids) + 1)
            if row.reused:
                assert row.prefix is not None  # a reused count comes from the prefix entry it was found in
                self._cache.write_prefix(row, row.prefix.keys, row.prefix.values, row.reused)
        plan = self._cache.prefill_plan(
            [(row, row.reused, len(new)) for row, new in zip(rows, news, strict=True)], width
        )
        logits = self._forward(ids.to(self.device), positions.to(self.device), plan, rows)
        self._cache.finish_prefill(plan)
        self.prompt_tokens += sum(len(row.handle.request.prompt_ids) for row in rows)
        self.reused_tokens += sum(row.reused for row in rows)
        first = pick_tokens(logits, [row.sampler for row in rows], [row.history for row in rows])
        return first

    def _adapter_names(self, requests: list[GenerationRequest]) -> dict[str, list[str]]:
        """Each row's adapter, for a model that takes them (a peft model's mixed-adapter batches)."""
        if "adapter_names" not in getattr(self.model, "special_peft_forward_args", ()):
            return {}
        return {"adapter_names": [request.adapter or "__base__" for request in requests]}

    def _new_row(self, handle: RequestHandle) -> _Row:
        request = handle.request
        room = self.context_length - len(request.prompt_ids)
        sampler = make_sampler(
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            repetition_penalty=request.repetition_penalty,
            seed=request.seed,
            device=self.device,
            dry=request.dry,
        )
        return _Row(
            handle=handle,
            history=list(request.prompt_ids),
            sampler=sampler,
            stop_ids=self.eos_token_ids | request.stop_token_ids,
            budget=min(request.max_new_tokens, room),
        )

    def _account(self, produced: list[tuple[_Row, int | SamplingError]]) -> list[StepEvent]:
        """Record each row's new token and decide whether the row is finished; the events to publish."""
        events: list[StepEvent] = []
        for row, token in produced:
            if isinstance(token, SamplingError):  # this row alone ends; its cache row goes with the finished
                log.warning("a request failed while sampling: %s", token)
                row.finished = row.failed = True
                events.append(StepEvent(row.handle, error=_row_error(token)))
                continue
            reason, tokens = None, []
            if token in row.stop_ids:
                reason = "stop"
            else:
                row.history.append(token)
                row.generated += 1
                row.next_token = token
                tokens = [token]
                if row.generated >= row.budget:
                    reason = "length"
            if reason is None and row.handle.cancel_requested:
                reason = "cancelled"
            row.finished = reason is not None
            events.append(StepEvent(row.handle, tokens, reason))
        return events

    def _retire(self, rows: list[_Row]) -> None:
        """Take ``rows`` out of the batch, keeping what they computed for later prompts."""
        if not rows:
            return
        for row in rows:
            if not row.failed and self.prefixes.token_budget:
                self._keep_prefix(row)
        self._cache.remove(rows)
        gone = set(rows)
        self._rows = [row for row in self._rows if row not in gone]
        self._reserved -= sum(row.reserved for row in rows)
        self._put_in_cache_order()

    def _keep_prefix(self, row: _Row) -> None:
        request = row.handle.request
        if row.handle.forgotten:
            return
        count = self._cache.length(row)
        keys, values = self._cache.read(row, count)
        self.prefixes.store(
            request.adapter, request.owner, row.history[:count], keys, values, replaces=row.prefix,
            contributors=request.contributors,
        )  # fmt: skip

    def _forget(self, owner: str) -> int:
        # requests of this owner still running or queued finish, but leave nothing behind
        with self._condition:
            handles = [row.handle for row in self._rows] + list(self._queue)
        for handle in handles:
            if handle.request.owner == owner or owner in handle.request.contributors:
                handle.forgotten = True
        return self.prefixes.drop_owner(owner)

    def _put_in_cache_order(self) -> None:
        order = self._cache.order
        if len(order) == len(self._rows) and all(a is b for a, b in zip(order, self._rows, strict=True)):
            return
        joined = set(self._rows)
        self._rows = [row for row in order if row in joined]

    def _beam_search(self, request: GenerationRequest, num_beams: int) -> list[int]:
        prompt = torch.tensor([request.prompt_ids], device=self.device)
        stop_ids = sorted(self.eos_token_ids | request.stop_token_ids)
        dry = [DryLogitsProcessor(request.dry)] if request.dry and request.dry.on else []
        output = self.model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=min(request.max_new_tokens, self.context_length - prompt.shape[1]),
            num_beams=num_beams,
            do_sample=False,
            repetition_penalty=request.repetition_penalty,
            logits_processor=LogitsProcessorList(dry),
            eos_token_id=stop_ids or None,
            pad_token_id=stop_ids[0] if stop_ids else 0,
            **self._adapter_names([request]),
        )
        reply = output[0, prompt.shape[1] :].tolist()
        return next((reply[:index] for index, token in enumerate(reply) if token in stop_ids), reply)

    def _run_job(self, job: _Job) -> None:
        if job.future.cancelled():
            return
        try:
            result, error = job.run(), None
        except Exception as exc:
            result, error = None, exc
        # an adapter a job unloaded takes its cached prefixes with it, before the job counts as done
        self.prefixes.keep_adapters(set(getattr(self.model, "peft_config", {})))
        _call_in_loop(job.loop, _settle, job.future, result, error)

    def _fail(self, handles: list[RequestHandle], error: Exception) -> None:
        self._drop_batch()
        wrapped = _engine_error(error)
        self._publish([StepEvent(handle, error=wrapped) for handle in handles])

    def _drop_batch(self) -> None:
        self._rows, self._cache, self._reserved = [], RowCache(self._shape, self.context_length), 0

    def _publish(self, events: list[StepEvent]) -> None:
        """Hand tokens and endings to their event loops: one call per loop per step."""
        by_loop: dict[asyncio.AbstractEventLoop, list[StepEvent]] = {}
        for event in events:
            by_loop.setdefault(event.handle._loop, []).append(event)
        for loop, batch in by_loop.items():
            if not _call_in_loop(loop, _deliver_all, batch):
                for event in batch:  # nobody can read these any more
                    event.handle.cancel_requested = True

    def _shut_down(self) -> None:
        with self._condition:
            pending = [row.handle for row in self._rows] + list(self._queue)
            jobs = list(self._jobs)
            self._queue.clear()
            self._jobs.clear()
        self._drop_batch()
        self.prefixes.clear()
        self._publish([StepEvent(handle, finish_reason="cancelled") for handle in pending])
        for job in jobs:
            _call_in_loop(job.loop, _settle, job.future, None, EngineError("the engine stopped"))


def _prefill_groups(rows: list[_Row]) -> list[list[_Row]]:
    """Consecutive runs of one adapter whose padded size stays within the prefill budget."""
    groups: list[list[_Row]] = []
    for row in rows:
        request = row.handle.request
        group = groups[-1] if groups else None
        if (
            group
            and group[0].handle.request.adapter == request.adapter
            and (len(group) + 1) * (len(request.prompt_ids) - row.reused) <= PREFILL_TOKEN_BUDGET
        ):
            group.append(row)
        else:
            groups.append([row])
    return groups


def _engine_error(error: BaseException) -> EngineError:
    wrapped = EngineError(f"generation failed: {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def _row_error(error: BaseException) -> EngineError:
    """What one failed request's consumer gets: a RequestError where its settings were at fault."""
    if not isinstance(error, SamplingError):
        return _engine_error(error)
    wrapped = RequestError(str(error))
    wrapped.__cause__ = error
    return wrapped


def _deliver_all(events: list[StepEvent]) -> None:
    for event in events:
        event.handle._deliver(event.tokens, event.finish_reason, event.error)


def _settle(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _call_in_loop(loop: asyncio.AbstractEventLoop, callback: Callable, *args: object) -> bool:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the consumer's event loop is closed: nobody is listening any more
        return False
    return True


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise EngineError("submit requests from a running asyncio event loop") from None
