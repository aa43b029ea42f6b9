"""Pretraining's text in, token batches out: split the text, encode it, sample windows for the loop.

Every check here runs before a tokenizer is trained or a step is taken, so bad input costs seconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from trainer.core.batches import Batch
from trainer.errors import ContextTooLongError


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Splits:
    train: str
    val: str
    test: str


def split_text(text: str, fractions: tuple[float, float, float]) -> Splits:
    """Contiguous parts, in order: a held-out tail is a fairer test of a model of running text than
    a random sample of lines that share their neighbours with the training part."""
    n = len(text)
    a = int(n * fractions[0])
    b = int(n * (fractions[0] + fractions[1]))
    if fractions[2] == 0:
        b = n
    return Splits(train=text[:a], val=text[a:b], test=text[b:])


def check_context_fits(block_size: int, split_tokens: dict[str, int]) -> None:
    """A split must hold one window of `block_size` inputs plus the next token as target."""
    for name, n in split_tokens.items():
        if n < block_size + 1:
            raise ContextTooLongError(
                f"the context length {block_size} is longer than the data: the {name} split holds only "
                f"{n} tokens, and one training window needs {block_size + 1}; "
                "use a shorter --context or more data"
            )


def encode(text: str, tokenizer, chunk_chars: int = 1 << 16) -> np.ndarray:
    """Token ids of `text`, encoded in line-aligned chunks so the Rust tokenizer runs them in parallel."""
    chunks, start = [], 0
    while start < len(text):
        end = min(len(text), start + chunk_chars)
        if end < len(text):
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        chunks.append(text[start:end])
        start = end
    ids = tokenizer(chunks, add_special_tokens=False, verbose=False)["input_ids"] if chunks else []
    dtype = np.uint16 if len(tokenizer) <= 1 << 16 else np.int32
    return np.fromiter((t for chunk in ids for t in chunk), dtype=dtype)


class BatchSampler:
    """Random windows of a token stream; the n-th batch depends only on (seed, rank, n).

    That makes the data position a single number: resuming at position n gives exactly the batches
    the uninterrupted run would have seen, and each DDP rank draws its own.
    """

    def __init__(self, data: np.ndarray, block_size: int, batch_size: int, seed: int, rank: int = 0):
        self.data = torch.from_numpy(data.astype(np.int64))
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.position = 0
        self._generator = torch.Generator()

    def next(self) -> Batch:
        """Windows of the stream as inputs, each shifted by one as the tokens to predict."""
        self._generator.manual_seed(hash((self.seed, self.rank, self.position)) & (2**63 - 1))
        self.position += 1
        starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=self._generator)
        x = torch.stack([self.data[s : s + self.block_size] for s in starts.tolist()])
        y = torch.stack([self.data[s + 1 : s + 1 + self.block_size] for s in starts.tolist()])
        return Batch(input_ids=x, targets=y)

    def first(self, count: int) -> list[Batch]:
        """The same ``count`` batches every time: evaluations compare from step to step."""
        self.position = 0
        return [self.next() for _ in range(count)]


class WindowBatches:
    """The training loop's batch source for pretraining: each step, ``per_step`` batches of random windows.
    Its state is the sampler's position."""

    def __init__(self, sampler: BatchSampler, per_step: int):
        self.sampler = sampler
        self.per_step = per_step

    def for_step(self, step: int) -> list[Batch]:
        return [self.sampler.next() for _ in range(self.per_step)]

    def state(self) -> dict[str, int]:
        return {"position": self.sampler.position}

    def restore(self, state: dict[str, int]) -> None:
        self.sampler.position = state["position"]
