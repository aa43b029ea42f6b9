"""Which rows run in the next step, decided without the model: the engine's scheduler.

The engine (brain/engine/batching.py) turns once per step: it asks :meth:`Scheduler.schedule` for a
:class:`StepPlan`, hands it to the runner (brain/engine/runner.py), which runs it on the model and
returns a :class:`StepOutput` (the token sampled for each row), and gives that back to
:meth:`Scheduler.update`, which decides which rows finished. Everything here is plain bookkeeping on
token counts, so it is tested with outputs built by hand (tests/brain/engine/test_scheduler.py).

What the scheduler owns:

- **admission**: a request joins when a row is free (``max_batch_size``) and the tokens it may come
  to hold (prompt and reply budget) fit in ``kv_cache_tokens`` beside the running rows'; a request
  alone always fits. Members are served first come, first served.
- **prefix matches**: a joining request starts from the longest prefix the prefix cache shares with
  its tokens (``PrefixMatcher``), and prefills only the rest.
- **width groups**: joining rows are prefilled together, left-padded, in groups of one adapter whose
  padded size stays within ``prefill_token_budget``.
- **priorities**: a member's reply comes before background work (summary folds, fact extraction).
  Background requests join only while no member waits and none joins in the same step, take their
  prompt in chunks of ``background_chunk`` tokens (so a member who arrives meanwhile waits for one
  chunk at most, not a whole prompt), and are preempted (their tokens kept as a prefix, resumed
  later) when a waiting member needs their room. With no member about they run at once: nothing
  starves on an idle brain.
- **a bounded backlog**: a background request with a ``coalesce_key`` replaces a waiting one of the
  same key (the newest wins), and at most ``max_background_waiting`` wait; the oldest beyond that is
  dropped. Both end as ``cancelled``; ``on_background`` counts them (and the ones held back).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from brain.engine.sampling import SEED_LIMIT, Dry

Priority = Literal["member", "background"]
"""Who waits for a generation: a member reading the reply, or nobody (background work)."""

BackgroundOutcome = Literal["coalesced", "dropped", "delayed", "preempted"]

PREFILL_TOKEN_BUDGET = 4096  # prompt tokens (rows x longest new part) prefilled in one forward pass
BACKGROUND_CHUNK = 256  # prompt tokens of one background request prefilled per step
MAX_BACKGROUND_WAITING = 64


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
    priority: Priority = "member"  # "background": runs in what members' replies leave (see the module docstring)
    # background work of one key (a chat's summary fold) that is still waiting is replaced by a newer one
    coalesce_key: str | None = None
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
        if self.priority not in ("member", "background"):
            raise ValueError(f"priority must be 'member' or 'background', not {self.priority!r}")
        self.stop_token_ids = frozenset(self.stop_token_ids)


class PrefixMatcher(Protocol):
    """What the scheduler asks of the prefix cache (brain/engine/prefix_cache.py)."""

    def lookup(
        self, adapter: str | None, prompt: list[int], owner: str | None = None, public: int = 0
    ) -> tuple[Any, int]:
        """An entry sharing a prefix with ``prompt`` (or None) and how many tokens it gives: ``owner``'s own
        entries as far as they match, another owner's only within the first ``public`` tokens."""
        ...


@dataclass(frozen=True)
class PrefillSlice:
    """Part of one row's tokens run through the model in a prefill pass."""

    request_id: int
    start: int  # the row's tokens already in the cache (a reused prefix, earlier chunks); the slice starts there
    count: int  # tokens this pass runs: the row's ids[start : start + count]
    reuse: int  # on the row's first slice, tokens to copy in from ``prefix`` first (then ``start == reuse``)
    prefix: Any  # the prefix-cache entry those tokens come from; None when nothing is reused
    last: bool  # the slice ends the row's tokens: its scores give the row's next token, and it decodes from then on


@dataclass(frozen=True)
class PrefillGroup:
    """Slices run together in one forward pass: one adapter, left-padded to the longest."""

    adapter: str | None  # the LoRA adapter of every slice in it (None: the base model)
    slices: tuple[PrefillSlice, ...]


@dataclass(frozen=True)
class StepPlan:
    """One step of the engine, as the scheduler decided it."""

    released: tuple[int, ...]  # running rows cancelled by their consumer: freed before the step, tokens kept
    preempted: tuple[int, ...]  # background rows making room for members: freed likewise; they wait to resume
    dropped: tuple[int, ...]  # waiting requests that end without running (cancelled, coalesced, backlog full)
    decode: tuple[int, ...]  # running rows that each decode one token (every row whose tokens are all in cache)
    prefill: tuple[PrefillGroup, ...]  # rows joining (or resuming, or continuing a chunked prompt), after decode


@dataclass(frozen=True)
class StepOutput:
    """What the runner returns for a plan."""

    # the token sampled for each decoding row and each row whose last slice ran, or why its sampling failed
    tokens: Mapping[int, int | Exception]
    failed: Mapping[int, BaseException] = field(default_factory=dict)  # rows whose prefill failed


FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class RowUpdate:
    """What a step meant for one request."""

    request_id: int
    token: int | None = None  # its new token (None: none this step, or it stopped)
    finish_reason: FinishReason | None = None  # set once it finished
    error: BaseException | None = None  # why it failed, with finish_reason "error"


@dataclass(eq=False)
class _Row:
    request_id: int
    request: GenerationRequest
    tokens: list[int]  # prompt, then generated ids: what a (re)started row prefills
    stop_ids: frozenset[int]
    budget: int  # new tokens allowed, capped by the context length
    generated: int = 0
    computed: int = -1  # tokens in the cache; -1 while it waits for admission
    prefilled: bool = False  # all its tokens went through the model: it decodes one token a step
    cancelled: bool = False
    delayed: bool = False  # counted once as held back for members

    @property
    def reserved(self) -> int:
        """The cache tokens this row may come to hold."""
        return len(self.request.prompt_ids) + self.budget

    @property
    def background(self) -> bool:
        return self.request.priority == "background"

    @property
    def decoding(self) -> bool:
        return self.prefilled


class Scheduler:
    """Decides each step of the engine (see the module docstring); touched by the engine's worker thread only."""

    def __init__(
        self,
        *,
        max_batch_size: int,
        kv_cache_tokens: int,
        context_length: int,
        eos_token_ids: frozenset[int] = frozenset(),
        prefixes: PrefixMatcher | None = None,
        prefill_token_budget: int = PREFILL_TOKEN_BUDGET,
        background_chunk: int = BACKGROUND_CHUNK,
        max_background_waiting: int = MAX_BACKGROUND_WAITING,
        on_background: Callable[[BackgroundOutcome], None] | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.kv_cache_tokens = kv_cache_tokens
        self.context_length = context_length
        self.eos_token_ids = eos_token_ids
        self.prefixes = prefixes
        self.prefill_token_budget = prefill_token_budget
        self.background_chunk = background_chunk
        self.max_background_waiting = max_background_waiting
        self.on_background = on_background
        self._rows: dict[int, _Row] = {}
        self._members: deque[_Row] = deque()  # waiting, first come first served
        self._background: deque[_Row] = deque()  # waiting; preempted rows go back in front
        self._running: list[_Row] = []  # in the cache, in the order they joined
        self._dropped: list[int] = []
        self.reserved = 0  # cache tokens the running rows may come to hold
        self.prompt_tokens = 0  # prompt tokens admitted
        self.reused_tokens = 0  # of them, taken from the prefix cache instead of a prefill

    @property
    def waiting(self) -> int:
        return len(self._members) + len(self._background)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def has_work(self) -> bool:
        return bool(self._members or self._background or self._running or self._dropped)

    def add(self, request_id: int, request: GenerationRequest) -> None:
        room = self.context_length - len(request.prompt_ids)
        row = _Row(
            request_id,
            request,
            list(request.prompt_ids),
            self.eos_token_ids | request.stop_token_ids,
            budget=max(1, min(request.max_new_tokens, room)),
        )
        self._rows[request_id] = row
        if not row.background:
            self._members.append(row)
            return
        if request.coalesce_key is not None:
            for older in [old for old in self._background if old.request.coalesce_key == request.coalesce_key]:
                if older.computed < 0 and not older.generated:  # never started: the newer one stands for it
                    self._drop_waiting(older, "coalesced")
        self._background.append(row)
        while len(self._background) > self.max_background_waiting:
            self._drop_waiting(self._background[0], "dropped")

    def cancel(self, request_id: int) -> None:
        row = self._rows.get(request_id)
        if row is not None:
            row.cancelled = True

    def schedule(self) -> StepPlan:
        released = [row for row in self._running if row.cancelled]
        for row in released:
            self._finish(row)
        for queue in (self._members, self._background):
            for row in [row for row in queue if row.cancelled]:
                queue.remove(row)
                self._dropped.append(row.request_id)
                del self._rows[row.request_id]
        preempted = self._preempt_for_members()
        joining = self._admit_members()
        decode = [row for row in self._running if row.decoding and row not in joining]
        slices = [self._first_slice(row) for row in joining]
        if not self._members and not joining:
            slices += self._background_slices()
        elif self._background:
            for row in self._background:
                if not row.delayed:
                    row.delayed = True
                    self._count("delayed")
        dropped, self._dropped = tuple(self._dropped), []
        return StepPlan(
            released=tuple(row.request_id for row in released),
            preempted=tuple(row.request_id for row in preempted),
            dropped=dropped,
            decode=tuple(row.request_id for row in decode),
            prefill=self._groups(slices),
        )

    def update(self, plan: StepPlan, output: StepOutput) -> list[RowUpdate]:
        """Count what the step did; each request's update. Finished rows leave the batch here."""
        updates: list[RowUpdate] = []
        decoded = set(plan.decode)
        for request_id, error in output.failed.items():
            row = self._rows.get(request_id)
            if row is not None:
                self._finish(row)
                updates.append(RowUpdate(request_id, finish_reason="error", error=error))
        for group in plan.prefill:
            for piece in group.slices:
                row = self._rows.get(piece.request_id)
                if row is not None and piece.request_id not in output.failed:
                    row.computed = piece.start + piece.count
                    row.prefilled = piece.last
        for request_id, token in output.tokens.items():
            row = self._rows.get(request_id)
            if row is None:
                continue
            if isinstance(token, Exception):
                self._finish(row)
                updates.append(RowUpdate(request_id, finish_reason="error", error=token))
                continue
            if request_id in decoded:
                row.computed += 1  # the token it fed this step is in the cache now
            if token in row.stop_ids:
                self._finish(row)
                updates.append(RowUpdate(request_id, finish_reason="stop"))
                continue
            row.tokens.append(token)
            row.generated += 1
            reason: FinishReason | None = "length" if row.generated >= row.budget else None
            if reason is not None:
                self._finish(row)
            updates.append(RowUpdate(request_id, token, reason))
        return updates

    def fail_running(self) -> list[int]:
        """A shared step failed: every running row ends, and every preempted one (what it generated is gone
        with the runner's state); their ids."""
        preempted = [row for row in self._background if row.generated]
        for row in preempted:
            self._background.remove(row)
        gone = [row.request_id for row in self._running + preempted]
        for row in self._running + preempted:
            self._finish(row)
        return gone

    # ---- admission ------------------------------------------------------------------------------

    def _admit_members(self) -> list[_Row]:
        joining: list[_Row] = []
        while self._members and len(self._running) < self.max_batch_size:
            row = self._members[0]
            if self._running and self.reserved + self._need(row) > self.kv_cache_tokens:
                break  # first come, first served: it waits for rows to finish, and so do those behind it
            self._members.popleft()
            self._join(row)
            joining.append(row)
        return joining

    def _preempt_for_members(self) -> list[_Row]:
        """Take background rows out (newest first) while the first waiting member lacks room."""
        preempted: list[_Row] = []
        if not self._members:
            return preempted
        need = self._need(self._members[0])
        while (len(self._running) >= self.max_batch_size or self.reserved + need > self.kv_cache_tokens) and any(
            row.background for row in self._running
        ):
            row = next(row for row in reversed(self._running) if row.background)
            self._running.remove(row)
            self.reserved -= row.reserved
            row.computed, row.prefilled = -1, False
            self._background.appendleft(row)
            preempted.append(row)
            self._count("preempted")
        return preempted

    def _background_slices(self) -> list[PrefillSlice]:
        """Chunks of background prompts: the ones already started, then new ones while room is left."""
        left = self.background_chunk
        slices = []
        for row in self._running:
            if row.background and not row.decoding and left > 0:
                slices.append(self._slice(row, row.computed, 0, None, left))
                left -= slices[-1].count
        while self._background and left > 0 and len(self._running) < self.max_batch_size:
            row = self._background[0]
            if self._running and self.reserved + self._need(row) > self.kv_cache_tokens:
                break
            self._background.popleft()
            self._join(row)
            slices.append(self._first_slice(row, left))
            left -= slices[-1].count
        return slices

    def _join(self, row: _Row) -> None:
        self._running.append(row)
        self.reserved += row.reserved
        row.computed = 0

    def _first_slice(self, row: _Row, limit: int | None = None) -> PrefillSlice:
        prefix, reused = None, 0
        if self.prefixes is not None:
            request = row.request
            prefix, reused = self.prefixes.lookup(request.adapter, row.tokens, request.owner, request.public_prefix)
        if not row.generated:  # a resumed row's prompt was counted when it first joined
            self.prompt_tokens += len(row.tokens)
            self.reused_tokens += reused
        return self._slice(row, reused, reused, prefix if reused else None, limit)

    def _slice(self, row: _Row, start: int, reuse: int, prefix: Any, limit: int | None) -> PrefillSlice:
        count = len(row.tokens) - start
        if limit is not None:
            count = min(count, limit)
        return PrefillSlice(row.request_id, start, count, reuse, prefix, start + count == len(row.tokens))

    def _need(self, row: _Row) -> int:
        return min(len(row.request.prompt_ids) + row.request.max_new_tokens, self.context_length)

    def _groups(self, slices: list[PrefillSlice]) -> tuple[PrefillGroup, ...]:
        """Consecutive runs of one adapter, by new length, whose padded size stays within the prefill budget."""
        adapter = {piece.request_id: self._rows[piece.request_id].request.adapter for piece in slices}
        ordered = sorted(slices, key=lambda piece: (adapter[piece.request_id] or "", piece.count))
        groups: list[list[PrefillSlice]] = []
        for piece in ordered:
            group = groups[-1] if groups else None
            if (
                group
                and adapter[group[0].request_id] == adapter[piece.request_id]
                and (len(group) + 1) * piece.count <= self.prefill_token_budget
            ):
                group.append(piece)
            else:
                groups.append([piece])
        return tuple(PrefillGroup(adapter[group[0].request_id], tuple(group)) for group in groups)

    # ---- leaving --------------------------------------------------------------------------------

    def _finish(self, row: _Row) -> None:
        if row in self._running:
            self._running.remove(row)
            self.reserved -= row.reserved
        self._rows.pop(row.request_id, None)

    def _drop_waiting(self, row: _Row, outcome: BackgroundOutcome) -> None:
        self._background.remove(row)
        del self._rows[row.request_id]
        self._dropped.append(row.request_id)
        self._count(outcome)

    def _count(self, outcome: BackgroundOutcome) -> None:
        if self.on_background is not None:
            self.on_background(outcome)
