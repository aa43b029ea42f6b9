"""How good a model is: the mean loss over batches (validation loss, and perplexity from it), the
likelihood of running text in windows (perplexity per token, bits per character), greedy replies and
their BLEU and chrF against references.

Perplexity is per token of the model's own tokenizer, so it only compares models that share one;
bits per character (the total negative log-likelihood in bits over the number of characters scored)
compares any two models, an n-gram over characters included.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sacrebleu
import torch
import torch.nn.functional as F

from trainer.core.batches import chunks, collate, left_padded
from trainer.core.distributed import Placement, sum_across_ranks
from trainer.core.examples import Example, PairExample, RatedExample
from trainer.core.models import ModelWithTokenizer
from trainer.core.objectives import Objective, sequence_logps
from trainer.errors import ConfigError

LN2 = math.log(2)


@torch.no_grad()
def mean_loss(
    model: torch.nn.Module,
    batches: Iterable[Any],
    objective: Objective,
    device: torch.device,
    *,
    placement: Placement | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """The objective's mean loss over every unit of ``batches`` (of every process's, given ``placement``), in
    eval mode; NaN when nothing was scored. Its exp is the perplexity."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        with autocast():
            loss = objective(model, batch.to(device))
        total, count = total + loss.total.item(), count + loss.count
    model.train(was_training)
    if placement is not None:
        total, units = sum_across_ranks([total, count], placement)
        count = round(units)
    return total / count if count else float("nan")


@torch.no_grad()
def reply_logprobs(
    model: torch.nn.Module,
    examples: list[Example],
    *,
    batch_size: int,
    max_batch_tokens: int,
    pad_id: int,
    device: torch.device,
) -> list[float]:
    """Each example's log-probability of its labelled tokens (a reply given its prompt), in eval mode, in the
    order given; examples of similar length share a batch."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: examples[i].size)
    out = [0.0] * len(examples)
    position = 0
    for group in chunks([examples[i] for i in order], batch_size, max_batch_tokens):
        logps = sequence_logps(model, collate(group, pad_id).to(device)).tolist()
        for value in logps:
            out[order[position]] = value
            position += 1
    model.train(was_training)
    return out


def fill_reference(
    model: torch.nn.Module,
    pairs: list[PairExample],
    rated: list[RatedExample],
    *,
    batch_size: int,
    max_batch_tokens: int,
    pad_id: int,
    device: torch.device,
) -> None:
    """Write ``model``'s log-probability of every reply into the pairs and rated replies: the reference of the
    preference objectives, computed once before training."""
    rows = [e for p in pairs for e in (p.chosen, p.rejected)] + [e for r in rated for e in (r.reply, r.mismatched)]
    logps = reply_logprobs(
        model, rows, batch_size=batch_size, max_batch_tokens=max_batch_tokens, pad_id=pad_id, device=device
    )
    for i, pair in enumerate(pairs):
        pair.ref_chosen, pair.ref_rejected = logps[2 * i], logps[2 * i + 1]
    offset = 2 * len(pairs)
    for i, example in enumerate(rated):
        example.ref_reply, example.ref_mismatched = logps[offset + 2 * i], logps[offset + 2 * i + 1]


@dataclass
class Score:
    """A total negative log-likelihood and what it was spread over."""

    nats: float = 0.0
    tokens: int = 0
    chars: int = 0

    def add(self, other: Score) -> None:
        self.nats += other.nats
        self.tokens += other.tokens
        self.chars += other.chars

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats / self.tokens) if self.tokens else math.nan

    @property
    def bits_per_char(self) -> float:
        return self.nats / LN2 / self.chars if self.chars else math.nan


@torch.no_grad()
def token_nll(
    loaded: ModelWithTokenizer, ids: list[int], scored_from: int = 1, stride: int | None = None, batch_size: int = 32
) -> float:
    """Total NLL (nats) of ids[scored_from:], each token given as much of what precedes it as the
    model's context allows. Windows advance by `stride` (default: the whole context, so no token is
    scored twice); a shorter stride gives later tokens more context at more cost."""
    window = min(loaded.max_positions or 1024, 1024)
    stride = stride or window
    if not 0 < stride <= window:
        raise ConfigError(f"the stride {stride} must be between 1 and the context length {window}")
    # each job: inputs ids[b:e] whose labels ids[b+1:e+1] include the new targets ids[first:e+1]
    jobs, first = [], max(1, scored_from)
    while first < len(ids):
        last = min(first + stride, len(ids))
        jobs.append((max(0, last - 1 - window), last - 1, first))
        first = last
    total = 0.0
    by_length: dict[int, list[tuple[int, int, int]]] = {}
    for job in jobs:
        by_length.setdefault(job[1] - job[0], []).append(job)
    tensor = torch.tensor(ids, dtype=torch.long)
    for group in by_length.values():
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            x = torch.stack([tensor[b:e] for b, e, _ in chunk]).to(loaded.device)
            y = torch.stack([tensor[b + 1 : e + 1] for b, e, _ in chunk]).to(loaded.device)
            logits = loaded.model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits.float()
            nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
            for row, (b, _, first) in enumerate(chunk):
                # label j of this row is token b + 1 + j; score those at index >= first
                total += nll[row, first - b - 1 :].sum().item()
    return total


def text_score(loaded: ModelWithTokenizer, text: str, stride: int | None = None) -> Score:
    """NLL of every character of `text`: a BOS token in front lets the first token be scored too."""
    tok = loaded.tokenizer
    ids = tok(text, add_special_tokens=False, verbose=False)["input_ids"]
    if not ids:
        return Score()
    if tok.bos_token_id is not None:
        return Score(token_nll(loaded, [tok.bos_token_id] + ids, 1, stride), len(ids), len(text))
    # without a BOS the first token has no context: leave it, and its characters, out
    first = len(tok.decode(ids[:1]))
    return Score(token_nll(loaded, ids, 1, stride), len(ids) - 1, len(text) - first)


def reply_score(loaded: ModelWithTokenizer, prompt_ids: list[int], reply: str) -> Score:
    """NLL of the reply's tokens after the prompt (the end-of-turn token is not counted)."""
    reply_ids = loaded.tokenizer(reply, add_special_tokens=False, verbose=False)["input_ids"]
    if not reply_ids:
        return Score()
    ids = prompt_ids + reply_ids
    return Score(token_nll(loaded, ids, len(prompt_ids)), len(reply_ids), len(reply))


@torch.no_grad()
def greedy_replies(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    *,
    batch_size: int,
    max_new_tokens: int,
    eos_token_ids: list[int],
    pad_id: int,
    device: torch.device,
) -> list[str]:
    """Greedy replies to prompts given as token ids, in batches of left-padded prompts, in eval mode."""
    was_training = model.training
    model.eval()
    replies: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids, mask = left_padded(chunk, pad_id)
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_ids,
            pad_token_id=pad_id,
        )
        replies += [tokenizer.decode(row[ids.shape[1] :], skip_special_tokens=True).strip() for row in out]
    model.train(was_training)
    return replies


def bleu_chrf(hypotheses: list[str], references: list[str]) -> tuple[float, float]:
    """Corpus BLEU and chrF (sacrebleu), NaN for no hypotheses."""
    if not hypotheses:
        return float("nan"), float("nan")
    return sacrebleu.corpus_bleu(hypotheses, [references]).score, sacrebleu.corpus_chrf(hypotheses, [references]).score
