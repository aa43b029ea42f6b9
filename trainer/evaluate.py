"""How good a model is, beside an n-gram baseline: perplexity, bits per character, BLEU and chrF.

Perplexity is per token of the model's own tokenizer, so it only compares models that share one;
bits per character (the total negative log-likelihood in bits over the number of characters scored)
compares any two models, an n-gram over characters included. For chat data, the model also writes
a reply to each held-out user turn, scored against the real reply with sacrebleu's BLEU and chrF.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import sacrebleu
import torch
import torch.nn.functional as F
from rich.table import Table

from trainer.chats import is_chat_file, read_chats, render
from trainer.errors import ConfigError, DataError
from trainer.model_io import LoadedModel
from trainer.ngram import KneserNeyLM
from trainer.pretrain import data as D
from trainer.sampling import SamplingOptions, generate_from_ids

NgramUnit = Literal["char", "token"]
Split = Literal["test", "val", "all"]
DEFAULT_SPLIT = (0.9, 0.05, 0.05)
LN2 = math.log(2)


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


@dataclass
class EvalRow:
    name: str
    unit: str
    score: Score
    bleu: float | None = None
    chrf: float | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "unit": self.unit,
            **asdict(self.score),
            "nats_per_token": self.score.nats / self.score.tokens if self.score.tokens else None,
            "perplexity": self.score.perplexity,
            "bits_per_char": self.score.bits_per_char,
            "bleu": self.bleu,
            "chrf": self.chrf,
        }


@dataclass
class EvalReport:
    data: str
    split: str
    rows: list[EvalRow] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "data": self.data,
            "split": self.split,
            "rows": [r.as_dict() for r in self.rows],
            "samples": self.samples,
        }

    def table(self) -> Table:
        table = Table(
            title=f"{self.data} ({self.split})",
            caption="ppl: perplexity per token of the row's unit; bits/char compares across units",
        )
        table.add_column("model (unit)", no_wrap=True)
        for column in ("tokens", "chars", "ppl", "bits/char", "BLEU", "chrF"):
            table.add_column(column, justify="right")
        for r in self.rows:
            table.add_row(
                r.name if r.name.endswith(")") else f"{r.name} ({r.unit}s)",
                f"{r.score.tokens:,}",
                f"{r.score.chars:,}",
                f"{r.score.perplexity:.3f}",
                f"{r.score.bits_per_char:.4f}",
                "-" if r.bleu is None else f"{r.bleu:.2f}",
                "-" if r.chrf is None else f"{r.chrf:.2f}",
            )
        return table


# -- the neural model ------------------------------------------------------------------------------


@torch.no_grad()
def token_nll(
    loaded: LoadedModel, ids: list[int], scored_from: int = 1, stride: int | None = None, batch_size: int = 32
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


def text_score(loaded: LoadedModel, text: str, stride: int | None = None) -> Score:
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


def reply_score(loaded: LoadedModel, prompt_ids: list[int], reply: str) -> Score:
    """NLL of the reply's tokens after the prompt (the end-of-turn token is not counted)."""
    reply_ids = loaded.tokenizer(reply, add_special_tokens=False, verbose=False)["input_ids"]
    if not reply_ids:
        return Score()
    ids = prompt_ids + reply_ids
    return Score(token_nll(loaded, ids, len(prompt_ids)), len(reply_ids), len(reply))


# -- data --------------------------------------------------------------------------------------------


def recorded_split(loaded: LoadedModel) -> tuple[float, float, float]:
    """The split a model made by `trainer pretrain` was trained with, so its test split is unseen."""
    meta = Path(loaded.name).expanduser() / "checkpoint.json"
    try:
        return tuple(json.loads(meta.read_text())["data"]["split"])  # type: ignore[return-value]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_SPLIT


def _pick(parts: D.Splits, split: Split) -> str:
    if split == "val" or (split == "test" and not parts.test.strip()):
        return parts.val
    return parts.test


# -- the evaluation ---------------------------------------------------------------------------------


def evaluate(
    loaded: LoadedModel,
    data: str | Path,
    split: Split = "test",
    ngram_order: int = 5,
    ngram_unit: NgramUnit = "char",
    ngram_train: str | Path | None = None,
    max_replies: int = 50,
    max_new_tokens: int = 64,
    stride: int | None = None,
) -> EvalReport:
    """Score the model and an n-gram baseline on the same held-out text, side by side.

    The n-gram learns from the training part of `data` (the part the model was trained on, when the
    model records its split), or from `ngram_train` with split="all"."""
    if split not in ("test", "val", "all") or ngram_unit not in ("char", "token"):
        raise ConfigError(f"split must be test, val or all ({split!r}); ngram_unit char or token ({ngram_unit!r})")
    if not 3 <= ngram_order <= 5:
        raise ConfigError(f"the n-gram baseline's order must be 3, 4 or 5, not {ngram_order}")
    if split == "all" and ngram_train is None:
        raise ConfigError("split 'all' scores all of the data: name the n-gram's training text (ngram_train)")
    if is_chat_file(data):
        return _evaluate_chats(loaded, data, split, ngram_order, ngram_unit, ngram_train, max_replies, max_new_tokens)
    text = D.load_clean_text(data)
    if split == "all":
        train, held_out = D.load_clean_text(ngram_train), text
    else:
        parts = D.split_text(text, recorded_split(loaded))
        train, held_out = parts.train, _pick(parts, split)
    if not held_out.strip():
        raise DataError(f"the {split} split of {data} is empty")
    report = EvalReport(data=str(data), split=split)
    report.rows.append(EvalRow(Path(loaded.name).name or loaded.name, "token", text_score(loaded, held_out, stride)))
    ngram, encode = _fit_ngram(loaded, train, ngram_order, ngram_unit)
    symbols = encode(held_out)
    report.rows.append(
        EvalRow(
            _ngram_name(ngram_order, ngram_unit), ngram_unit, Score(ngram.nll(symbols), len(symbols), len(held_out))
        )
    )
    return report


def _fit_ngram(loaded: LoadedModel, train: str, order: int, unit: NgramUnit):
    if unit == "char":

        def encode(s: str) -> list:
            return list(s)
    else:

        def encode(s: str) -> list:
            return loaded.tokenizer(s, add_special_tokens=False, verbose=False)["input_ids"]

    return KneserNeyLM(order).fit(encode(train)), encode


def _ngram_name(order: int, unit: NgramUnit) -> str:
    return f"{order}-gram KN ({unit}s)"


def _evaluate_chats(
    loaded: LoadedModel,
    data: str | Path,
    split: Split,
    order: int,
    unit: NgramUnit,
    ngram_train: str | Path | None,
    max_replies: int,
    max_new_tokens: int,
) -> EvalReport:
    tok = loaded.tokenizer
    if not getattr(tok, "chat_template", None):
        raise DataError(f"{data} holds chats, but the model {loaded.name} has no chat template")
    chats = read_chats(data)
    if split == "all":
        train_chats, held_out = read_chats(ngram_train), chats
    else:
        cut = max(1, int(len(chats) * 0.9))
        if cut >= len(chats):
            raise DataError(f"{data} holds {len(chats)} conversation(s): too few to hold some out")
        train_chats, held_out = chats[:cut], chats[cut:]

    ngram, encode = _fit_ngram(loaded, "".join(render(tok, c) for c in train_chats), order, unit)
    window = loaded.max_positions or 1024
    model_score, ngram_score = Score(), Score()
    hyps, ngram_hyps, refs, samples = [], [], [], []
    greedy = SamplingOptions(strategy="greedy", max_new_tokens=min(max_new_tokens, window // 2))
    end_of_turn = tok.eos_token or ""
    for chat in held_out:
        for i, message in enumerate(chat):
            if message["role"] != "assistant" or i == 0 or len(refs) >= max_replies:
                continue
            prompt = render(tok, chat[:i], prompt=True)
            prompt_ids = tok(prompt, add_special_tokens=False, verbose=False)["input_ids"]
            reply = message["content"]
            reply_len = len(tok(reply, add_special_tokens=False, verbose=False)["input_ids"])
            room = window - max(reply_len, greedy.max_new_tokens)
            if room < 1:
                continue  # a reply longer than the whole context cannot be scored fairly
            prompt_ids = prompt_ids[-room:]
            model_score.add(reply_score(loaded, prompt_ids, reply))
            symbols = encode(reply)
            ngram_score.add(Score(ngram.nll(symbols, history=encode(prompt)), len(symbols), len(reply)))
            hyp = generate_from_ids(loaded, prompt_ids, greedy)[0].strip()
            stop = [encode(end_of_turn)] if end_of_turn else []
            made = ngram.generate(encode(prompt), max_symbols=min(2 * len(symbols) + 8, 400), stop=stop)
            ngram_hyp = ("".join(made) if unit == "char" else tok.decode(made, skip_special_tokens=True)).strip()
            hyps.append(hyp)
            ngram_hyps.append(ngram_hyp)
            refs.append(reply)
            if len(samples) < 5:
                samples.append({"prompt": chat[i - 1]["content"], "reference": reply, "model": hyp, "ngram": ngram_hyp})
    if not refs:
        raise DataError(f"the held-out part of {data} has no assistant reply that follows another turn")
    report = EvalReport(data=str(data), split=split if split == "all" else "held-out 10%", samples=samples)
    report.rows.append(EvalRow(Path(loaded.name).name or loaded.name, "token", model_score, *_bleu_chrf(hyps, refs)))
    report.rows.append(EvalRow(_ngram_name(order, unit), unit, ngram_score, *_bleu_chrf(ngram_hyps, refs)))
    return report


def _bleu_chrf(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    return sacrebleu.corpus_bleu(hyps, [refs]).score, sacrebleu.corpus_chrf(hyps, [refs]).score
