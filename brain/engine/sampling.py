"""Choosing each row's next token from a batch of logits.

Each sampled row has its own ``torch.Generator``; plain greedy rows (temperature 0, no repetition penalty,
no DRY) share one batched ``argmax`` and cost nothing per row. Rows with the same settings (every member of
one persona) are processed together: the repetition penalty over their histories at once (transformers'
processor), each row's own DRY penalties, then top-k, and top-p among the k candidates only, so that no row
sorts the whole vocabulary (16 rows of the persona's top-k 50 and top-p 0.9 took 2 ms each with transformers'
warpers, the top-p one sorting 49,152 scores: a quarter of the brain's time with 16 members). The processors
of one row (transformers', and DryLogitsProcessor) are what a row falls back to when its batch fails, so
that the row at fault fails alone.

A row whose settings turn out unusable (a seed the generator refuses, scores that overflow to inf or
NaN) fails alone: ``make_sampler`` raises :class:`SamplingError`, and ``pick_tokens`` returns one in
that row's place while every other row gets its token.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

SEED_LIMIT = 2**64  # torch.Generator takes seeds below this
# llama.cpp's bound of a penalty's exponent: base ** exponent stays below float32's largest value
_FLOAT_MAX_LOG = 88.7228391
# markers in the chosen ids of rows that failed; never a token id
_MODEL_NAN = -2
_UNUSABLE = -1


class SamplingError(ValueError):
    """One request's sampling settings cannot be used; that request fails and the batch goes on."""


@dataclass
class RowSampler:
    """One row's way of picking tokens: ``processors`` is None for plain greedy."""

    processors: LogitsProcessorList | None
    sample: bool
    generator: torch.Generator | None
    # (temperature, top_k, top_p, repetition_penalty): rows of one key are processed together; None: plain greedy
    batch_key: tuple[float, int, float, float] | None = None
    dry: Dry | None = None  # this row's DRY, where it is on


class StableTemperature(LogitsProcessor):
    """Divides the scores by the temperature after shifting the best one to 0.

    The distribution is the same as transformers' TemperatureLogitsWarper gives, but a tiny temperature
    sends the other scores to -inf (sampling turns greedy) instead of overflowing every score to inf.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return (scores - scores.max(dim=-1, keepdim=True).values) / self.temperature


@dataclass(frozen=True)
class Dry:
    """DRY ("don't repeat yourself") settings, as llama.cpp's server names them (dry_multiplier, ...).

    A token that would extend a span already seen in the last ``penalty_last_n`` tokens (-1: all of them) loses
    ``multiplier * base ** (length - allowed_length)`` from its score, where ``length`` is the span's length
    (at least ``allowed_length``). A span never reaches back across a sequence breaker, and a breaker token
    itself is never penalised. ``breaker_ids``: the tokens that hold a breaker string (the caller's tokenizer
    knows them: :func:`breaker_token_ids`). ``multiplier`` 0 is off.
    """

    multiplier: float = 0.0
    base: float = 1.75
    allowed_length: int = 2
    penalty_last_n: int = -1
    breaker_ids: frozenset[int] = frozenset()
    # leading tokens of the history (the prompt) that DRY never looks at: a reply may then quote its prompt (a fact
    # the member told) freely, and only its own repeats cost. 0: the whole context, as llama.cpp has it
    skip: int = 0

    @property
    def on(self) -> bool:
        return self.multiplier > 0.0 and self.base >= 1.0 and self.penalty_last_n != 0


def dry_penalties(history: Sequence[int], dry: Dry) -> dict[int, float]:
    """The amount each token's score loses under ``dry`` after ``history``: llama.cpp's DRY, token for token.

    For each earlier place where the history's last tokens occur again, the token that followed there would
    extend the repeat; its repeat length is how far back the match runs (bounded by the last breaker in the
    history and by the window). A token gets the penalty of its longest repeat.
    """
    history = history[dry.skip :]
    if not dry.on or not history:
        return {}
    window = list(history if dry.penalty_last_n < 0 else history[-dry.penalty_last_n :])
    size = len(window)
    if size <= dry.allowed_length:
        return {}
    # no repeat reaches back across the newest breaker: it limits how long the history's last span can be
    limit = size
    for back in range(size):
        if window[size - 1 - back] in dry.breaker_ids:
            limit = back
            break
    if limit < dry.allowed_length or limit == 0:
        return {}
    last = window[-1]
    longest: dict[int, int] = {}
    # the earlier places where the last token occurred (found in C: a window may hold thousands of tokens)
    for end in np.flatnonzero(np.asarray(window[:-1]) == last).tolist():
        length = 1
        while length < limit and length <= end and window[end - length] == window[size - 1 - length]:
            length += 1
        if length >= dry.allowed_length:
            follower = window[end + 1]
            longest[follower] = max(longest.get(follower, 0), length)
    max_exponent = int(_FLOAT_MAX_LOG / math.log(dry.base)) if dry.base > 1.000001 else 0
    penalties: dict[int, float] = {}
    for token, length in longest.items():
        if token in dry.breaker_ids:
            continue
        exponent = length - dry.allowed_length
        if max_exponent > 0:
            exponent = min(exponent, max_exponent)
        penalties[token] = dry.multiplier * dry.base**exponent
    return penalties


class DryLogitsProcessor(LogitsProcessor):
    """DRY as a transformers logits processor, for the engine's rows and for ``generate`` (beam search)."""

    def __init__(self, dry: Dry) -> None:
        self.dry = dry

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        for row, history in enumerate(input_ids.tolist()):
            penalties = dry_penalties(history, self.dry)
            if penalties:
                ids = torch.tensor(list(penalties), dtype=torch.long, device=scores.device)
                amounts = torch.tensor(list(penalties.values()), dtype=scores.dtype, device=scores.device)
                scores[row].index_add_(0, ids, -amounts)
        return scores


def breaker_token_ids(vocabulary: Sequence[str], breakers: Sequence[str]) -> frozenset[int]:
    """The ids of the tokens whose text holds one of ``breakers`` (``vocabulary[id]`` is a token's decoded text).

    llama.cpp also follows a breaker spread over several tokens; here a breaker is one token, as in
    text-generation-webui, and a token such as ".\n" counts as a newline breaker."""
    wanted = [text for text in breakers if text]
    return frozenset(index for index, text in enumerate(vocabulary) if any(b in text for b in wanted))


def make_sampler(
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    repetition_penalty: float,
    seed: int | None,
    device: torch.device,
    dry: Dry | None = None,
) -> RowSampler:
    """The sampler for one request's settings; :class:`SamplingError` if they cannot be used."""
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise SamplingError(f"seed must be between 0 and 2**64 - 1, not {seed}")
    try:
        return _build(temperature, top_p, top_k, repetition_penalty, seed, device, dry)
    except Exception as error:  # whatever a processor or the generator refuses fails this request only
        raise SamplingError(f"the sampling settings cannot be used: {type(error).__name__}: {error}") from error


def _build(
    temperature: float,
    top_p: float,
    top_k: int,
    repetition_penalty: float,
    seed: int | None,
    device: torch.device,
    dry: Dry | None,
) -> RowSampler:
    processors = LogitsProcessorList()
    # llama.cpp's order: penalties, then DRY, then temperature and truncation
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    dry = dry if dry is not None and dry.on else None
    if dry is not None:
        processors.append(DryLogitsProcessor(dry))
    if temperature == 0.0:
        key = (0.0, 0, 1.0, repetition_penalty) if processors else None
        return RowSampler(processors or None, sample=False, generator=None, batch_key=key, dry=dry)
    if temperature != 1.0:
        processors.append(StableTemperature(temperature))
    if top_k > 0:
        processors.append(TopKLogitsWarper(top_k))  # built (and so checked) even where the batch path runs
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    key = (temperature, top_k, top_p, repetition_penalty)
    return RowSampler(processors, sample=True, generator=generator, batch_key=key, dry=dry)


def pick_tokens(
    logits: torch.Tensor, samplers: list[RowSampler], histories: list[list[int]]
) -> list[int | SamplingError]:
    """The next token of each row of ``logits`` ([rows, vocab]), or the SamplingError of a row that failed.

    ``histories`` feed the repetition penalty. Failures are found without a host sync per row: an
    unusable row is still sampled from a harmless stand-in distribution (a NaN one could abort a GPU
    kernel) and marked, and the marks are read with the tokens.
    """
    chosen = logits.argmax(dim=-1)
    errors: dict[int, SamplingError] = {}
    alike: dict[tuple[float, int, float, float], list[int]] = {}
    alone: list[int] = []
    for row, sampler in enumerate(samplers):
        if sampler.processors is not None:
            (alone if sampler.batch_key is None else alike.setdefault(sampler.batch_key, [])).append(row)
    for key, rows in alike.items():
        try:
            chosen[rows] = _pick_alike(logits[rows], key, [samplers[r] for r in rows], [histories[r] for r in rows])
        except Exception:  # each row on its own, so that only the one at fault fails
            alone += rows
    for row in alone:
        sampler = samplers[row]
        try:
            chosen[row] = _pick_processed(logits[row : row + 1], sampler, histories[row])
        except Exception as error:
            errors[row] = SamplingError(f"sampling failed: {type(error).__name__}: {error}")
    chosen = torch.where(torch.isnan(logits).any(dim=-1), _MODEL_NAN, chosen)
    picks: list[int | SamplingError] = []
    for row, token in enumerate(chosen.tolist()):
        if row in errors:
            picks.append(errors[row])
        elif token == _MODEL_NAN:
            picks.append(SamplingError("the model's scores for this request are NaN; no token can be chosen"))
        elif token == _UNUSABLE:
            picks.append(
                SamplingError(
                    "the sampling settings leave no usable token scores (they overflow to inf or NaN); "
                    "use a repetition_penalty and temperature nearer 1"
                )
            )
        else:
            picks.append(token)
    return picks


def _pick_processed(logits: torch.Tensor, sampler: RowSampler, history_ids: list[int]) -> torch.Tensor:
    """One row's token after its processors, as a 0-d tensor; ``_UNUSABLE`` where the scores are broken."""
    assert sampler.processors is not None
    history = torch.tensor([history_ids], dtype=torch.long, device=logits.device)
    # transformers asks for torch.LongTensor, a type that no tensor constructor is annotated to return
    scores = sampler.processors(history, logits.float())  # type: ignore[arg-type]  # float32: bf16 overflows far sooner
    usable = torch.isfinite(scores).any() & ~(torch.isnan(scores) | torch.isposinf(scores)).any()
    if sampler.sample:
        probs = torch.softmax(torch.where(usable, scores, 0.0), dim=-1)
        token = torch.multinomial(probs, num_samples=1, generator=sampler.generator)[0, 0]
    else:
        token = scores.argmax(dim=-1)[0]
    return torch.where(usable, token, _UNUSABLE)


def _pick_alike(
    logits: torch.Tensor,
    key: tuple[float, int, float, float],
    samplers: list[RowSampler],
    histories: list[list[int]],
) -> torch.Tensor:
    """The tokens of rows with the same settings (``key``), processed together; ``_UNUSABLE`` for a row whose
    scores are broken."""
    temperature = key[0]
    candidates, ids, usable = alike_scores(logits, key, histories, [sampler.dry for sampler in samplers])
    if temperature == 0.0:
        picks = candidates.argmax(dim=-1)
    else:
        probs = torch.softmax(candidates, dim=-1)
        picks = torch.cat([
            torch.multinomial(probs[row : row + 1], num_samples=1, generator=sampler.generator)[0]
            for row, sampler in enumerate(samplers)
        ])  # fmt: skip
    tokens = picks if ids is None else ids.gather(1, picks[:, None])[:, 0]
    return torch.where(usable, tokens, _UNUSABLE)


def alike_scores(
    logits: torch.Tensor,
    key: tuple[float, int, float, float],
    histories: list[list[int]],
    dries: Sequence[Dry | None] = (),
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The scores rows with the same settings sample from, as their processors give them one row at a time: the
    repetition penalty, each row's DRY (``dries``), the temperature, top-k, then top-p (the smallest set of the
    best candidates whose probability reaches ``top_p``), found among the top-k candidates only where there is a
    top-k. Returns the candidates' scores (-inf where cut), their token ids (None: the whole vocabulary, in
    order), and whether each row's scores were usable (a broken row gets a harmless stand-in)."""
    temperature, top_k, top_p, penalty = key
    scores = logits.float()  # float32: bf16 overflows far sooner
    if penalty != 1.0:
        width = max(len(history) for history in histories)
        # a row's history padded with its own first token: a token penalised twice is penalised once
        ids = torch.tensor([h + h[:1] * (width - len(h)) for h in histories], dtype=torch.long, device=scores.device)
        scores = RepetitionPenaltyLogitsProcessor(penalty)(ids, scores)
    for row, dry in enumerate(dries):
        penalties = dry_penalties(histories[row], dry) if dry is not None else {}
        if penalties:
            tokens = torch.tensor(list(penalties), dtype=torch.long, device=scores.device)
            amounts = torch.tensor(list(penalties.values()), dtype=scores.dtype, device=scores.device)
            scores[row].index_add_(0, tokens, -amounts)
    # a row's best score is finite unless it holds a NaN or +inf, or nothing finite: one pass finds broken rows
    best = scores.max(dim=-1, keepdim=True).values
    usable = torch.isfinite(best[:, 0])
    scores, best = torch.where(usable[:, None], scores, 0.0), torch.where(usable[:, None], best, 0.0)
    if temperature == 0.0:
        return scores, None, usable
    if 0 < top_k < scores.shape[-1]:
        # the temperature keeps the order, so it is applied to the k best only
        candidates, order = scores.topk(top_k, dim=-1)  # best first
        return _top_p((candidates - best) / temperature, top_p), order, usable
    scores = (scores - best) / temperature  # StableTemperature's
    if top_p == 1.0:
        return scores, None, usable
    candidates, order = scores.sort(dim=-1, descending=True)
    return _top_p(candidates, top_p), order, usable


def _top_p(candidates: torch.Tensor, top_p: float) -> torch.Tensor:
    """``candidates`` (best first) with those beyond the smallest set whose probability reaches ``top_p`` cut."""
    if top_p == 1.0:
        return candidates
    probs = torch.softmax(candidates, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # the probability of the better candidates
    return candidates.masked_fill(before >= top_p, -math.inf)  # the best one always stays (0 before it)
