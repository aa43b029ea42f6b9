"""`trainer eval`: how good a model is on held-out data, beside an n-gram baseline scored on the same text.

The measures are trainer/core/evaluation.py's: perplexity, bits per character and, for chat data, BLEU
and chrF of a greedy reply to each held-out user turn against the real reply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from rich.table import Table

from trainer.core.config import EvalOptions, SamplingOptions
from trainer.core.evaluation import Score, bleu_chrf, reply_score, text_score
from trainer.core.examples import ChatRenderer, is_chat_file, read_chats
from trainer.core.models import ModelWithTokenizer
from trainer.core.text import load_clean_text
from trainer.errors import DataError
from trainer.ngram import KneserNeyLM
from trainer.pretrain import data as D
from trainer.sampling import generate_from_ids

DEFAULT_SPLIT = (0.9, 0.05, 0.05)


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


# -- data --------------------------------------------------------------------------------------------


def recorded_split(loaded: ModelWithTokenizer) -> tuple[float, float, float]:
    """The split a model made by `trainer pretrain` was trained with, so its test split is unseen."""
    meta = Path(loaded.name).expanduser() / "checkpoint.json"
    try:
        train, val, test = json.loads(meta.read_text())["data"]["split"]
        return float(train), float(val), float(test)
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_SPLIT


def _pick(parts: D.Splits, split: str) -> str:
    if split == "val" or (split == "test" and not parts.test.strip()):
        return parts.val
    return parts.test


# -- the evaluation ---------------------------------------------------------------------------------


def evaluate(loaded: ModelWithTokenizer, data: str | Path, options: EvalOptions | None = None) -> EvalReport:
    """Score the model and an n-gram baseline on the same held-out text, side by side.

    The n-gram learns from the training part of `data` (the part the model was trained on, when the
    model records its split), or from `options.ngram_train` with split "all"."""
    options = options or EvalOptions()
    if is_chat_file(data):
        return _evaluate_chats(loaded, data, options)
    text = load_clean_text(data)
    if options.split == "all" and options.ngram_train:  # the options refuse "all" without a training text
        train, held_out = load_clean_text(options.ngram_train), text
    else:
        parts = D.split_text(text, recorded_split(loaded))
        train, held_out = parts.train, _pick(parts, options.split)
    if not held_out.strip():
        raise DataError(f"the {options.split} split of {data} is empty")
    report = EvalReport(data=str(data), split=options.split)
    score = text_score(loaded, held_out, options.stride)
    report.rows.append(EvalRow(Path(loaded.name).name or loaded.name, "token", score))
    ngram, encode = _fit_ngram(loaded, train, options)
    symbols = encode(held_out)
    ngram_score = Score(ngram.nll(symbols), len(symbols), len(held_out))
    report.rows.append(EvalRow(_ngram_name(options), options.ngram_unit, ngram_score))
    return report


def _fit_ngram(loaded: ModelWithTokenizer, train: str, options: EvalOptions) -> tuple[KneserNeyLM, Any]:
    if options.ngram_unit == "char":

        def encode(s: str) -> list:
            return list(s)
    else:

        def encode(s: str) -> list:
            return loaded.tokenizer(s, add_special_tokens=False, verbose=False)["input_ids"]

    return KneserNeyLM(options.ngram_order).fit(encode(train)), encode


def _ngram_name(options: EvalOptions) -> str:
    return f"{options.ngram_order}-gram KN ({options.ngram_unit}s)"


def _evaluate_chats(loaded: ModelWithTokenizer, data: str | Path, options: EvalOptions) -> EvalReport:
    tok = loaded.tokenizer
    if not getattr(tok, "chat_template", None):
        raise DataError(f"{data} holds chats, but the model {loaded.name} has no chat template")
    chats = read_chats(data)
    if options.split == "all" and options.ngram_train:
        train_chats, held_out = read_chats(options.ngram_train), chats
    else:
        cut = max(1, int(len(chats) * 0.9))
        if cut >= len(chats):
            raise DataError(f"{data} holds {len(chats)} conversation(s): too few to hold some out")
        train_chats, held_out = chats[:cut], chats[cut:]

    render = ChatRenderer(tok).text
    ngram, encode = _fit_ngram(loaded, "".join(render(c) for c in train_chats), options)
    window = loaded.max_positions or 1024
    model_score, ngram_score = Score(), Score()
    hyps: list[str] = []
    ngram_hyps: list[str] = []
    refs: list[str] = []
    samples: list[dict[str, str]] = []
    greedy = SamplingOptions(strategy="greedy", max_new_tokens=min(options.max_new_tokens, window // 2))
    end_of_turn = tok.eos_token or ""
    for chat in held_out:
        for i, message in enumerate(chat):
            if message["role"] != "assistant" or i == 0 or len(refs) >= options.max_replies:
                continue
            prompt = render(chat[:i], prompt=True)
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
            ngram_hyp = (
                "".join(map(str, made))
                if options.ngram_unit == "char"
                else str(tok.decode(cast(list[int], made), skip_special_tokens=True))
            ).strip()
            hyps.append(hyp)
            ngram_hyps.append(ngram_hyp)
            refs.append(reply)
            if len(samples) < 5:
                samples.append({"prompt": chat[i - 1]["content"], "reference": reply, "model": hyp, "ngram": ngram_hyp})
    if not refs:
        raise DataError(f"the held-out part of {data} has no assistant reply that follows another turn")
    split = "all" if options.split == "all" else "held-out 10%"
    report = EvalReport(data=str(data), split=split, samples=samples)
    name = Path(loaded.name).name or loaded.name
    report.rows.append(EvalRow(name, "token", model_score, *bleu_chrf(hyps, refs)))
    report.rows.append(EvalRow(_ngram_name(options), options.ngram_unit, ngram_score, *bleu_chrf(ngram_hyps, refs)))
    return report
