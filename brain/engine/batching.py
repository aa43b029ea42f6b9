"""Continuous batching on token ids: requests join the running batch at step boundaries and leave when done.

A worker thread owns the model. Each turn of its loop it asks the scheduler (:mod:`brain.engine.scheduler`)
for a plan (which rows decode a token, which join and prefill how much of their prompt, which leave), has
the runner (:mod:`brain.engine.runner`) execute it on the model, gives the sampled tokens back to the
scheduler, which decides who finished, and hands each row's new token to its asyncio consumer (one call
per event loop per step). The batch's key/value cache, written in place and kept by each row's own
length, lives in :mod:`brain.engine.kv_cache`; token choice in :mod:`brain.engine.sampling`.

Prompts reuse what earlier requests computed: a finished request's keys and values go to a
:class:`~brain.engine.prefix_cache.PrefixCache` (``prefix_cache_mib``), and a new request of the
same adapter prefills only what follows the longest prefix it shares with one of them (the member's
previous prompt and reply, or their persona's system prompt). ``forget(owner)`` drops the entries of
a request's ``owner`` and those whose ``contributors`` name them. A request joins the batch once the
tokens it may need (prompt and reply budget) fit in ``kv_cache_tokens`` beside the running rows'. A
request's ``priority`` says whether a member waits for it: ``"background"`` work (summary folds, fact
extraction) runs in what members leave.

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
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import torch
from transformers import LogitsProcessorList, PreTrainedModel

from brain.engine.attention import use_rows_attention
from brain.engine.model_loading import context_length as config_context_length
from brain.engine.runner import ModelRunner
from brain.engine.sampling import DryLogitsProcessor, SamplingError
from brain.engine.scheduler import BackgroundOutcome, GenerationRequest, Priority, Scheduler

__all__ = ["Engine", "EngineError", "GenerationRequest", "Priority", "RequestError", "RequestHandle"]

log = logging.getLogger(__name__)
_END = object()
T = TypeVar("T")


class EngineError(RuntimeError):
    """Generation failed inside the engine, or the engine is not running."""


class RequestError(EngineError, ValueError):
    """This request's own settings cannot be served: it alone failed, and the engine goes on."""


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
        on_background: Callable[[BackgroundOutcome], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.eos_token_ids = frozenset(eos_token_ids)
        self.device = torch.device(device)
        self.context_length = context_length or config_context_length(model.config)
        # a request alone may always run: the budget is at least one context
        self.kv_cache_tokens = max(kv_cache_tokens or max_batch_size * self.context_length, self.context_length)
        self.on_step = on_step
        self.runner = ModelRunner(
            model, device=self.device, context_length=self.context_length, prefix_cache_mib=prefix_cache_mib
        )
        self.prefixes = self.runner.prefixes
        self.scheduler = Scheduler(
            max_batch_size=max_batch_size,
            kv_cache_tokens=self.kv_cache_tokens,
            context_length=self.context_length,
            eos_token_ids=self.eos_token_ids,
            prefixes=self.prefixes,
            on_background=on_background,
        )
        # an nn.Embedding's count, which torch types as it types any module attribute
        self._vocab_size = cast(int, model.get_input_embeddings().num_embeddings)
        self._condition = threading.Condition()
        self._queue: deque[RequestHandle] = deque()  # submitted, not yet handed to the scheduler
        self._jobs: deque[_Job] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # every request the scheduler holds, by id; touched only by the worker thread
        self._handles: dict[int, RequestHandle] = {}
        self._ids = itertools.count()
        use_rows_attention(model)

    @property
    def model(self) -> Any:
        """A transformers model, or the peft model that wraps it once adapters load (see brain/adapters.py)."""
        return self.runner.model

    @model.setter
    def model(self, model: Any) -> None:
        self.runner.model = model

    @property
    def active(self) -> int:
        """Rows in the running batch."""
        return self.scheduler.running

    @property
    def waiting(self) -> int:
        """Requests queued for a free row."""
        return len(self._queue) + self.scheduler.waiting

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens admitted."""
        return self.scheduler.prompt_tokens

    @property
    def reused_tokens(self) -> int:
        """Of the prompt tokens admitted, those taken from the prefix cache instead of a prefill."""
        return self.scheduler.reused_tokens

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
                    while not (self._stopping or self._queue or self._jobs or self.scheduler.has_work):
                        self._condition.wait()
                    if self._stopping:
                        break
                    jobs, self._jobs = list(self._jobs), deque()
                    arrivals, self._queue = list(self._queue), deque()
                for job in jobs:
                    self._run_job(job)
                for handle in arrivals:
                    request_id = next(self._ids)
                    self._handles[request_id] = handle
                    self.scheduler.add(request_id, handle.request)
                events, ran = self._step()
                self._publish(events)
                if ran:
                    self._report(ran, sum(len(event.tokens) for event in events))
            self._shut_down()

    def _step(self) -> tuple[list[StepEvent], int]:
        """Plan a step, run it on the model and account for it; the events to publish, and the rows that
        produced a token."""
        for request_id, handle in self._handles.items():
            if handle.cancel_requested:
                self.scheduler.cancel(request_id)
        plan = self.scheduler.schedule()
        events = [self._ended(request_id, "cancelled") for request_id in plan.dropped]
        for request_id in plan.dropped:  # a preempted row cancelled while it waited to resume
            self.runner.release(request_id, keep=False)
        for request_id in plan.released:
            self.runner.release(request_id, keep=not self._handles[request_id].forgotten)
            events.append(self._ended(request_id, "cancelled"))
        for request_id in plan.preempted:
            self.runner.preempt(request_id, keep=not self._handles[request_id].forgotten)
        requests = {request_id: self._handles[request_id].request for request_id in self._handles}
        try:
            output = self.runner.execute(plan, requests)
        except Exception as error:  # a failed step fails its rows, not the engine
            gone = self.scheduler.fail_running()
            log.exception("generation step failed; ending its %d requests", len(gone))
            self.runner.reset()
            wrapped = _engine_error(error)
            return events + [self._ended(request_id, "error", wrapped) for request_id in gone], 0
        ran = 0
        for update in self.scheduler.update(plan, output):
            ran += update.error is None and (update.token is not None or update.finish_reason == "stop")
            handle = self._handles[update.request_id]
            if update.finish_reason is None:
                if handle.cancel_requested:  # cancelled during the step: no need to wait for the next one
                    self.scheduler.cancel(update.request_id)
                events.append(StepEvent(handle, [update.token] if update.token is not None else []))
                continue
            if update.error is not None:
                log.warning("a request failed: %s", update.error)
                self.runner.release(update.request_id, keep=False)
                events.append(self._ended(update.request_id, "error", _row_error(update.error)))
                continue
            self.runner.release(update.request_id, keep=not handle.forgotten)
            tokens = [update.token] if update.token is not None else []
            events.append(self._ended(update.request_id, update.finish_reason, tokens=tokens))
        return events, ran

    def _ended(
        self, request_id: int, reason: str, error: BaseException | None = None, tokens: list[int] | None = None
    ) -> StepEvent:
        handle = self._handles.pop(request_id)
        if error is not None:
            return StepEvent(handle, error=error)
        return StepEvent(handle, tokens or [], reason)

    def _report(self, rows: int, tokens: int) -> None:
        if self.on_step is None:
            return
        try:
            self.on_step(rows, tokens)
        except Exception:  # a metrics hook must not stop generation
            log.exception("on_step callback failed")

    def _forget(self, owner: str) -> int:
        # requests of this owner still running or queued finish, but leave nothing behind
        with self._condition:
            handles = list(self._handles.values()) + list(self._queue)
        for handle in handles:
            if handle.request.owner == owner or owner in handle.request.contributors:
                handle.forgotten = True
        return self.prefixes.drop_owner(owner)

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
            **self.runner.adapter_names([request]),
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
            pending = list(self._handles.values()) + list(self._queue)
            jobs = list(self._jobs)
            self._queue.clear()
            self._jobs.clear()
        self._handles.clear()
        self.runner.reset()
        self.prefixes.clear()
        self._publish([StepEvent(handle, finish_reason="cancelled") for handle in pending])
        for job in jobs:
            _call_in_loop(job.loop, _settle, job.future, None, EngineError("the engine stopped"))


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
