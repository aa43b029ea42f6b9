"""Runs a scheduler's :class:`~brain.engine.scheduler.StepPlan` on the model: the engine's model runner.

It owns what touches tensors: each running row's sampler and history (for the repetition penalty),
the keys and values of the running rows (:class:`~brain.engine.kv_cache.RowCache`), and the prefix
cache that finished rows leave their keys and values in. A plan's decode rows run first, one token
each, in one forward pass; then its prefill groups, one forward pass each. A background row's prompt
taken in several chunks waits in a staging cache until its last chunk, so that decode steps never
see a half-filled row.

One request's failure is its own: settings that cannot be sampled, or a prefill that fails alone,
come back in the :class:`~brain.engine.scheduler.StepOutput` for that row only; a group whose prefill
fails is retried one row at a time. A failed decode step raises: no row can be blamed for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import torch

from brain.engine.attention import use_rows_attention
from brain.engine.kv_cache import DecodePlan, KVShape, PrefillPlan, RowCache
from brain.engine.lean_decode import LeanDecoder
from brain.engine.prefix_cache import PrefixCache, PrefixEntry
from brain.engine.sampling import RowSampler, SamplingError, make_sampler, pick_tokens
from brain.engine.scheduler import GenerationRequest, PrefillGroup, PrefillSlice, StepOutput, StepPlan

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _RunRow:
    request: GenerationRequest
    sampler: RowSampler
    history: list[int]  # prompt then sampled ids: what it prefills, and what the repetition penalty reads
    next_token: int = 0  # what the row feeds at its next decode step
    prefix: PrefixEntry | None = None  # the cached prefix it started from, replaced by what it leaves


class ModelRunner:
    """The model side of the engine; used by the engine's worker thread only."""

    def __init__(
        self, model: Any, *, device: torch.device, context_length: int, prefix_cache_mib: float, lean: bool = True
    ) -> None:
        self.model = model
        self.device = device
        self.context_length = context_length
        self.shape = KVShape.of(model, device)
        self.prefixes = PrefixCache(int(prefix_cache_mib * 2**20) // self.shape.token_bytes())
        self.cache = RowCache(self.shape, context_length)
        self.staging = RowCache(self.shape, context_length)  # background prompts between chunks
        self._rows: dict[int, _RunRow] = {}
        # ``lean``: decoding steps take brain/engine/lean_decode.py's fast path where the model allows it; the
        # decoder of the model it was built for (None: the generic forward pass), built here, at start, and
        # again for a model that replaces it (a peft model once adapters load) or whose weights changed
        self.lean = lean
        self._lean: tuple[Any, LeanDecoder | None] = (model, LeanDecoder.of(model, device) if lean else None)

    def execute(self, plan: StepPlan, requests: dict[int, GenerationRequest]) -> StepOutput:
        """Run ``plan`` (its rows' requests in ``requests``); the token of every row that produced one."""
        tokens: dict[int, int | Exception] = {}
        failed: dict[int, BaseException] = {}
        if plan.decode:
            tokens.update(self._decode(set(plan.decode)))
        for group in plan.prefill:
            self._run_group(list(group.slices), group, requests, tokens, failed)
        return StepOutput(tokens, failed)

    def release(self, request_id: int, *, keep: bool) -> None:
        """Take a finished row out; ``keep``: its keys and values go to the prefix cache for later prompts."""
        row = self._rows.pop(request_id, None)
        self._free(request_id, row, keep)

    def preempt(self, request_id: int, *, keep: bool) -> None:
        """Free a row's cache, keeping its sampler for when it resumes; ``keep``: its tokens too, as a prefix."""
        self._free(request_id, self._rows.get(request_id), keep)

    def reset(self) -> None:
        """A shared step failed: forget every row."""
        self._rows.clear()
        self.cache = RowCache(self.shape, self.context_length)
        self.staging = RowCache(self.shape, self.context_length)

    # ---- steps ----------------------------------------------------------------------------------

    def _decode(self, decoding: set[int]) -> dict[int, int | Exception]:
        plan = self.cache.decode_plan()
        order = cast(list[int], self.cache.order)
        if set(order) != decoding:
            raise RuntimeError("the decode plan and the cache's rows disagree")
        rows = [self._rows[key] for key in order]
        ids = torch.tensor([[row.next_token] for row in rows], device=self.device)
        lean = self._lean_decoder()
        if lean is not None:
            logits = lean(ids, plan.positions(), plan)
        else:
            logits = self._forward(ids, plan.positions(), plan, [row.request for row in rows])
        self.cache.advance(plan)
        picked = pick_tokens(logits, [row.sampler for row in rows], [row.history for row in rows])
        return self._record(zip(order, rows, picked, strict=True))

    def _run_group(
        self,
        slices: list[PrefillSlice],
        group: PrefillGroup,
        requests: dict[int, GenerationRequest],
        tokens: dict[int, int | Exception],
        failed: dict[int, BaseException],
    ) -> None:
        """Prefill ``slices`` together; if that fails, each alone, so that only the row at fault fails."""
        try:
            tokens.update(self._prefill(slices, requests))
            return
        except Exception as error:
            for piece in slices:  # what this pass half-wrote is of no use
                for cache in (self.cache, self.staging):
                    if piece.request_id in cache:
                        cache.remove([piece.request_id])
            if len(slices) == 1:
                log.exception("prefilling a request failed; it alone fails")
                self._rows.pop(slices[0].request_id, None)
                failed[slices[0].request_id] = error
                return
            log.warning("prefilling %d requests together failed (%s); trying each alone", len(slices), error)
        for piece in slices:
            # a row's earlier chunks were dropped with the failed pass: it starts over from its first slice
            if piece.start != piece.reuse:
                self._rows.pop(piece.request_id, None)
                failed[piece.request_id] = RuntimeError("a chunked prefill failed")
                continue
            self._run_group([piece], group, requests, tokens, failed)

    def _prefill(
        self, slices: list[PrefillSlice], requests: dict[int, GenerationRequest]
    ) -> dict[int, int | Exception]:
        rows = [self._row(piece.request_id, requests[piece.request_id]) for piece in slices]
        width = max(piece.count for piece in slices)
        ids = torch.zeros(len(slices), width, dtype=torch.long)
        positions = torch.zeros(len(slices), width, dtype=torch.long)
        for index, (piece, row) in enumerate(zip(slices, rows, strict=True)):
            end = piece.start + piece.count
            ids[index, width - piece.count :] = torch.tensor(row.history[piece.start : end])
            positions[index, width - piece.count :] = torch.arange(piece.start, end)
            self._place(piece, row)
        # one plan over both caches: each row's place is its own, wherever it lives
        planned = [
            self._cache_of(piece).prefill_plan([(piece.request_id, piece.start, piece.count)], width).rows[0]
            for piece in slices
        ]
        plan = PrefillPlan(planned)
        logits = self._forward(ids.to(self.device), positions.to(self.device), plan, [row.request for row in rows])
        for piece, entry in zip(slices, planned, strict=True):
            self._cache_of(piece).finish_prefill(PrefillPlan([entry]))
        last = [index for index, piece in enumerate(slices) if piece.last]
        if not last:
            return {}
        picked = pick_tokens(
            logits[last], [rows[index].sampler for index in last], [rows[index].history for index in last]
        )
        return self._record(
            (slices[index].request_id, rows[index], token) for index, token in zip(last, picked, strict=True)
        )

    def _place(self, piece: PrefillSlice, row: _RunRow) -> None:
        """Give the slice's row its place: a new row (with its reused prefix), or the one its earlier chunks filled."""
        key, total = piece.request_id, len(row.history) + 1
        cache = self._cache_of(piece)
        if piece.start == piece.reuse:  # the row's first slice
            cache.add(key, total if piece.last else len(row.history))
            if piece.reuse:
                entry = cast(PrefixEntry, piece.prefix)
                row.prefix = entry
                cache.write_prefix(key, entry.keys, entry.values, piece.reuse)
        elif piece.last:  # the last chunk: the row moves from staging into the batch
            keys, values = self.staging.read(key, piece.start)
            self.staging.remove([key])
            cache.add(key, total)
            cache.write_prefix(key, keys, values, piece.start)

    def _cache_of(self, piece: PrefillSlice) -> RowCache:
        return self.cache if piece.last else self.staging

    def _row(self, request_id: int, request: GenerationRequest) -> _RunRow:
        row = self._rows.get(request_id)
        if row is None:
            sampler = make_sampler(
                temperature=request.temperature,
                top_p=request.top_p,
                top_k=request.top_k,
                repetition_penalty=request.repetition_penalty,
                seed=request.seed,
                device=self.device,
                dry=request.dry,
            )
            row = self._rows[request_id] = _RunRow(request, sampler, list(request.prompt_ids))
        return row

    def _record(self, picked: Any) -> dict[int, int | Exception]:
        """Note each row's new token (what it feeds next); the tokens by row."""
        tokens: dict[int, int | Exception] = {}
        for key, row, token in picked:
            if isinstance(token, SamplingError):
                tokens[key] = token
                continue
            row.history.append(token)
            row.next_token = token
            tokens[key] = token
        return tokens

    def _forward(
        self, ids: torch.Tensor, positions: torch.Tensor, plan: PrefillPlan | DecodePlan, requests: list[Any]
    ) -> torch.Tensor:
        """The model's scores at each row's last position."""
        use_rows_attention(self.model)  # again: generate_batch and friends may have switched it
        return self.model(
            input_ids=ids,
            position_ids=positions,
            use_cache=False,
            logits_to_keep=1,
            rows_plan=plan,
            **self.adapter_names(requests),
        ).logits[:, -1]

    def _lean_decoder(self) -> LeanDecoder | None:
        if not self.lean:
            return None
        model, lean = self._lean
        if model is not self.model or (lean is not None and lean.stale):
            self._lean = (self.model, LeanDecoder.of(self.model, self.device))
            lean = self._lean[1]
        return lean

    def adapter_names(self, requests: list[GenerationRequest]) -> dict[str, list[str]]:
        """Each row's adapter, for a model that takes them (a peft model's mixed-adapter batches)."""
        if "adapter_names" not in getattr(self.model, "special_peft_forward_args", ()):
            return {}
        return {"adapter_names": [request.adapter or "__base__" for request in requests]}

    def _free(self, request_id: int, row: _RunRow | None, keep: bool) -> None:
        for cache in (self.cache, self.staging):
            if request_id not in cache:
                continue
            if keep and row is not None and self.prefixes.token_budget:
                count = cache.length(request_id)
                keys, values = cache.read(request_id, count)
                request = row.request
                self.prefixes.store(
                    request.adapter, request.owner, row.history[:count], keys, values, replaces=row.prefix,
                    contributors=request.contributors,
                )  # fmt: skip
            cache.remove([request_id])
