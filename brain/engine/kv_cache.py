"""The running batch's keys and values, kept by length: the cache's bookkeeping.

Each row's keys and values live in a *group* of rows of one width: buffers of shape
``[row capacity, kv heads, width, head dim]`` per layer, where a row's token at position p sits in
column p. Widths go 128, 256, 512, ... up to the context length; a row lives in the narrowest group
that holds its tokens and moves (one row copied) to the next when it outgrows it. So memory follows
each row's own length: one long reply widens its own row, not every row of the batch. A leaving row's
place is taken by its group's last row; an emptied group frees its buffers.

The plans made here (:class:`DecodePlan`, :class:`PrefillPlan`) say where each row's new keys and values
go; the attention kernel that writes and reads them is in :mod:`brain.engine.attention`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

MIN_WIDTH = 128


class _Group:
    """Rows of one width; row i of the group is the batch's row ``offset + i`` during a decode step."""

    def __init__(self, width: int, shape: KVShape) -> None:
        self.width = width
        self.shape = shape
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.members: list[Hashable] = []  # the row key in each slot
        self.lengths: list[int] = []  # tokens held by each slot
        # [capacity, width], True where a slot holds a token
        self.mask = torch.zeros(0, width, dtype=torch.bool, device=shape.device)
        # set by RowCache.decode_plan for the layers' in-place writes
        self.slots: torch.Tensor | None = None
        self.columns: torch.Tensor | None = None
        self.step_mask: torch.Tensor | None = None
        self.span = 0
        self.longest = 0

    @property
    def rows(self) -> int:
        return len(self.members)

    @property
    def capacity(self) -> int:
        return self.mask.shape[0]

    def add(self, key: Hashable) -> int:
        if self.rows == self.capacity:
            self._grow(max(1, 2 * self.capacity))
        self.members.append(key)
        self.lengths.append(0)
        self.mask[self.rows - 1] = False
        return self.rows - 1

    def remove(self, slot: int) -> Hashable | None:
        """Drop ``slot``, moving the last row into it; the key of the row that moved, if one did."""
        last = self.rows - 1
        moved = None
        if slot != last:
            for buffers in (self.keys, self.values):
                for buffer in buffers:
                    buffer[slot] = buffer[last]
            self.mask[slot] = self.mask[last]
            self.members[slot], self.lengths[slot] = self.members[last], self.lengths[last]
            moved = self.members[slot]
        self.members.pop()
        self.lengths.pop()
        return moved

    def _grow(self, capacity: int) -> None:
        shape = self.shape
        size = (capacity, shape.kv_heads, self.width, shape.head_dim)
        old = self.rows
        for buffers in (self.keys, self.values):
            for layer in range(shape.layers):
                # zeros, not garbage: a slot's unused columns sit beside real ones in the attention read
                new = torch.zeros(size, dtype=shape.dtype, device=shape.device)
                if layer < len(buffers):
                    new[:old] = buffers[layer][:old]
                    buffers[layer] = new
                else:
                    buffers.append(new)
        mask = torch.zeros(capacity, self.width, dtype=torch.bool, device=shape.device)
        mask[:old] = self.mask[:old]
        self.mask = mask


@dataclass(frozen=True)
class KVShape:
    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, model: PreTrainedModel, device: torch.device) -> KVShape:
        config = model.config.get_text_config()
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        dtype = next(parameter.dtype for parameter in model.parameters() if parameter.is_floating_point())
        if device.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
            # a CPU attends half-precision keys and values in float32 (brain/engine/attention.py): held in float32,
            # each is converted once, when written, not at every step (converting the rows' caches was a quarter
            # of the brain's time with 16 members on /v1/chat); the same values, twice the bytes a token
            dtype = torch.float32
        return cls(config.num_hidden_layers, kv_heads, head_dim, dtype, device)

    def token_bytes(self) -> int:
        """Bytes of one token's keys and values over every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8


@dataclass
class PrefillRow:
    """One row of a prefill: where its keys go, how many are there already and how many it adds."""

    group: _Group
    slot: int
    reused: int  # tokens already in place (a reused prefix)
    new: int  # tokens this pass adds
    pad: int  # left padding of this row in the pass's input
    mask: torch.Tensor | None  # [new, reused + new] causal mask, when part of the prefix was reused


@dataclass
class PrefillPlan:
    rows: list[PrefillRow]


@dataclass
class DecodePlan:
    groups: list[_Group]  # in batch order; each group's ``span`` rows follow the previous group's

    def positions(self) -> torch.Tensor:
        """The position of each row's new token, in batch order, as ``[rows, 1]``."""
        columns = []
        for group in self.groups:
            assert group.columns is not None  # RowCache.decode_plan sets them for every group it plans
            columns.append(group.columns)
        return torch.cat(columns)[:, None]


class RowCache:
    """Keys and values of the running rows (see the module docstring); rows are named by hashable keys."""

    def __init__(self, shape: KVShape, context_length: int) -> None:
        self.shape = shape
        self.context_length = context_length
        self._groups: dict[int, _Group] = {}
        self._where: dict[Hashable, tuple[_Group, int]] = {}

    @property
    def order(self) -> list[Hashable]:
        """The keys of the rows in batch order: narrow groups first, each by slot."""
        return [key for width in sorted(self._groups) for key in self._groups[width].members]

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._where

    def length(self, key: Hashable) -> int:
        group, slot = self._where[key]
        return group.lengths[slot]

    def allocated_tokens(self) -> int:
        return sum(group.capacity * group.width for group in self._groups.values())

    def add(self, key: Hashable, tokens: int) -> None:
        """A new, empty row with room for ``tokens`` tokens."""
        self._place(key, self._width_for(tokens))

    def remove(self, keys: Sequence[Hashable]) -> None:
        for key in keys:
            group, slot = self._where.pop(key)
            moved = group.remove(slot)
            if moved is not None:
                self._where[moved] = (group, slot)
            if not group.rows:  # an empty group holds no memory
                del self._groups[group.width]

    def write_prefix(self, key: Hashable, keys: list[torch.Tensor], values: list[torch.Tensor], count: int) -> None:
        """Copy the first ``count`` tokens of a stored prefix (per layer ``[kv heads, tokens, head dim]``) in."""
        group, slot = self._where[key]
        for layer in range(self.shape.layers):
            group.keys[layer][slot, :, :count] = keys[layer][:, :count]
            group.values[layer][slot, :, :count] = values[layer][:, :count]
        group.mask[slot, :count] = True
        group.lengths[slot] = count

    def read(self, key: Hashable, count: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """A copy of a row's first ``count`` tokens, per layer ``[kv heads, tokens, head dim]``."""
        group, slot = self._where[key]
        keys = [buffer[slot, :, :count].clone() for buffer in group.keys]
        values = [buffer[slot, :, :count].clone() for buffer in group.values]
        return keys, values

    def prefill_plan(self, rows: list[tuple[Hashable, int, int]], width: int) -> PrefillPlan:
        """The plan of a prefill of ``(key, reused, new)`` rows, left-padded to ``width`` tokens."""
        planned = []
        for key, reused, new in rows:
            group, slot = self._where[key]
            mask = None
            if reused:
                columns = torch.arange(reused + new, device=self.shape.device)
                mask = columns[None, :] <= (reused + torch.arange(new, device=self.shape.device))[:, None]
            planned.append(PrefillRow(group, slot, reused, new, width - new, mask))
        return PrefillPlan(planned)

    def finish_prefill(self, plan: PrefillPlan) -> None:
        for row in plan.rows:
            row.group.mask[row.slot, row.reused : row.reused + row.new] = True
            row.group.lengths[row.slot] = row.reused + row.new

    def decode_plan(self) -> DecodePlan:
        """Make room for one more token in every row (moving rows that outgrew their group); the step's plan.

        The batch order may change: read ``order`` after this call."""
        for key in list(self._where):
            group, slot = self._where[key]  # read afresh: a move fills its hole with another row
            if group.lengths[slot] + 1 > group.width:
                self._move(key, self._width_for(group.lengths[slot] + 1))
        groups = [self._groups[width] for width in sorted(self._groups)]
        device = self.shape.device
        for group in groups:
            group.span = group.rows
            group.slots = torch.arange(group.rows, device=device)
            group.columns = torch.tensor(group.lengths, device=device)
            group.mask[group.slots, group.columns] = True
            group.longest = max(group.lengths) + 1
            same = min(group.lengths) + 1 == group.longest
            group.step_mask = None if same else group.mask[: group.rows, None, None, : group.longest]
        return DecodePlan(groups)

    def advance(self, plan: DecodePlan) -> None:
        """Count the token that the step just wrote into every row."""
        for group in plan.groups:
            group.lengths = [length + 1 for length in group.lengths]

    def _width_for(self, tokens: int) -> int:
        if tokens > self.context_length:
            raise ValueError(f"a row of {tokens} tokens does not fit the context of {self.context_length}")
        width = MIN_WIDTH
        while width < tokens:
            width *= 2
        return min(width, max(self.context_length, MIN_WIDTH))

    def _place(self, key: Hashable, width: int) -> tuple[_Group, int]:
        group = self._groups.get(width)
        if group is None:
            group = self._groups[width] = _Group(width, self.shape)
        slot = group.add(key)
        self._where[key] = (group, slot)
        return group, slot

    def _move(self, key: Hashable, width: int) -> None:
        old, old_slot = self._where[key]
        count = old.lengths[old_slot]
        keys = [buffer[old_slot, :, :count].clone() for buffer in old.keys]
        values = [buffer[old_slot, :, :count].clone() for buffer in old.values]
        self.remove([key])
        self._place(key, width)
        self.write_prefix(key, keys, values, count)
