"""Examples into batches: padded tensors, groups within a token budget, and the order of each epoch.

A Batch holds the model's inputs and, for each position, the token it should predict there (IGNORE_INDEX
where nothing is scored). Examples carry labels aligned with their ids, as Hugging Face models take them;
collate shifts them by one, so that pretraining's windows (already shifted) and examples are one kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

from trainer.core.examples import IGNORE_INDEX, Example, PairExample, RatedExample


@dataclass
class Batch:
    input_ids: torch.Tensor
    # targets[:, t] is the token position t should predict; as wide as input_ids, or one less
    targets: torch.Tensor
    attention_mask: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        mask = self.attention_mask.to(device) if self.attention_mask is not None else None
        return Batch(self.input_ids.to(device), self.targets.to(device), mask)

    @property
    def tokens(self) -> int:
        """Input tokens that are not padding."""
        return int(self.attention_mask.sum()) if self.attention_mask is not None else self.input_ids.numel()


def collate(examples: list[Example], pad_id: int) -> Batch:
    """A right-padded batch; padding is masked out of attention and has no target."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.ids)
        ids[row, :n] = torch.tensor(example.ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return Batch(input_ids=ids, targets=labels[:, 1:], attention_mask=mask)


@dataclass
class PairBatch:
    """DPO pairs: the chosen replies' rows, then the rejected ones' in the same order, with each row's
    reference log-probability of its reply."""

    rows: Batch
    ref_logps: torch.Tensor  # (2 * pairs,)

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(self.rows.to(device), self.ref_logps.to(device))

    @property
    def tokens(self) -> int:
        return self.rows.tokens


@dataclass
class RatedBatch:
    """Replies rated on their own, and each prompt with its mismatched reply (apart: KTO differentiates through
    the replies only), with each row's reference log-probability and, per reply, whether it was liked."""

    rows: Batch
    mismatched: Batch
    ref_logps: torch.Tensor  # (replies,)
    ref_mismatched: torch.Tensor  # (replies,)
    desirable: torch.Tensor  # (replies,) bool

    def to(self, device: torch.device) -> RatedBatch:
        return RatedBatch(
            self.rows.to(device),
            self.mismatched.to(device),
            self.ref_logps.to(device),
            self.ref_mismatched.to(device),
            self.desirable.to(device),
        )

    @property
    def tokens(self) -> int:
        return self.rows.tokens + self.mismatched.tokens


def collate_pairs(pairs: list[PairExample], pad_id: int) -> PairBatch:
    rows = collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    refs = [p.ref_chosen for p in pairs] + [p.ref_rejected for p in pairs]
    return PairBatch(rows, torch.tensor(refs, dtype=torch.float32))


def collate_rated(rated: list[RatedExample], pad_id: int) -> RatedBatch:
    return RatedBatch(
        rows=collate([r.reply for r in rated], pad_id),
        mismatched=collate([r.mismatched for r in rated], pad_id),
        ref_logps=torch.tensor([r.ref_reply for r in rated], dtype=torch.float32),
        ref_mismatched=torch.tensor([r.ref_mismatched for r in rated], dtype=torch.float32),
        desirable=torch.tensor([r.desirable for r in rated], dtype=torch.bool),
    )


class Sized(Protocol):
    """An example, a pair or a rated reply: how many rows of a batch it fills, and how wide they are."""

    rows: int

    @property
    def size(self) -> int: ...


S = TypeVar("S", bound=Sized)


def chunks(examples: list[S], max_examples: int, max_tokens: int) -> list[list[S]]:
    """Consecutive groups of at most ``max_examples`` whose padded size stays within ``max_tokens``
    (an example longer than that goes alone). Sort by size first for the least padding."""
    groups: list[list[S]] = []
    for example in examples:
        group = groups[-1] if groups else None
        longest = max([e.size for e in group] + [example.size]) if group else 0
        if group and len(group) < max_examples and longest * example.rows * (len(group) + 1) <= max_tokens:
            group.append(example)
        else:
            groups.append([example])
    return groups


def by_length(examples: list[Example], max_examples: int, max_tokens: int, pad_id: int) -> list[Batch]:
    """Every example once, in batches of similar length within the token budget (for evaluation)."""
    ordered = sorted(examples, key=lambda e: e.size)
    return [collate(group, pad_id) for group in chunks(ordered, max_examples, max_tokens)]


def epoch_order(
    examples: Sequence[Example | PairExample | RatedExample], batch_size: int, seed: int
) -> list[list[int]]:
    """One epoch's batches (as indices): a seeded shuffle, then examples of similar length side by side
    (within windows of 16 batches) so that little compute goes to padding, then the batches in a seeded order."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(examples), generator=generator).tolist()
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        ranked = sorted(order[start : start + window], key=lambda i: examples[i].size)
        batches += [ranked[i : i + batch_size] for i in range(0, len(ranked), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


class ExampleBatches:
    """The training loop's batch source for examples. Step n's batch is a function of (seed, n) alone,
    so a resumed run sees what the uninterrupted one would have: epoch e is ordered by seed + e. Each
    process takes its share of the batch, in micro-batches of at most ``micro_batch_size`` examples and
    ``max_batch_tokens`` padded tokens, whose gradients add up to the whole share's. Examples of another
    kind (pairs, rated replies) come with their own ``collate``."""

    def __init__(
        self,
        examples: Sequence[Example | PairExample | RatedExample],
        *,
        batch_size: int,
        micro_batch_size: int,
        max_batch_tokens: int,
        seed: int,
        pad_id: int,
        rank: int = 0,
        world_size: int = 1,
        collate: Callable[[list[Any], int], Any] = collate,
    ):
        self.examples = examples
        self.collate = collate
        self.batch_size = batch_size
        self.micro_batch_size = micro_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.seed = seed
        self.pad_id = pad_id
        self.rank = rank
        self.world_size = world_size
        self._epoch: tuple[int, list[list[int]]] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.examples) / self.batch_size)

    def for_step(self, step: int) -> list[Batch]:
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, epoch_order(self.examples, self.batch_size, self.seed + epoch))
        batch = self._epoch[1][index]
        mine = batch[self.rank :: self.world_size] or batch[self.rank % len(batch) :][:1]
        share = sorted((self.examples[i] for i in mine), key=lambda e: e.size)
        groups = chunks(share, self.micro_batch_size, self.max_batch_tokens)
        return [self.collate(group, self.pad_id) for group in groups]

    def state(self) -> dict[str, int]:
        return {}

    def restore(self, state: dict[str, int]) -> None:
        pass  # the step alone says where the data is


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of token ids as one left-padded batch for generation: (ids, attention mask), both (rows, width)."""
    width = max(len(prompt) for prompt in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt))
        mask[row, width - len(prompt) :] = 1
    return ids, mask
