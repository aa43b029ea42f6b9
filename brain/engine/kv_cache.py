"""The running batch's key/value cache: one row per request, preallocated, written in place.

transformers' DynamicCache appends with ``torch.cat`` (a copy of the whole cache at every step) and
keeps rows aligned, so that a request joining or leaving the batch copies everyone's keys again.
Here each layer keeps its keys and values in buffers of shape
``[row capacity, kv heads, column capacity, head dim]``:

- row r holds its request's tokens in columns ``0 .. lengths[r]-1``, so a token's column is its
  position id; a decode step writes every row's new key and value at that row's own column, and the
  model attends over the first ``max(lengths) + 1`` columns with a mask hiding each row's unused tail;
- a joining request is prefilled on its own (left-padded with the others that arrive with it, in a
  plain DynamicCache) and copied into the next free row;
- a leaving row's place is taken by the last row: one row is copied, not the batch;
- buffers are copied only when the batch outgrows them.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

# spare columns, at least, whenever the buffers grow, so that growing stays rare
HEADROOM = 64


class SlotLayer(DynamicLayer):
    """One layer's keys and values; ``update`` writes one new token per row in place."""

    def __init__(self, cache: BatchCache) -> None:
        super().__init__()
        self.cache = cache
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if key_states.shape[-2] != 1:
            raise ValueError("BatchCache takes one new token per row; prefill arrivals and use add_rows")
        cache = self.cache
        self.key_buffer[cache.row_index, :, cache.columns] = key_states[:, :, 0]
        self.value_buffer[cache.row_index, :, cache.columns] = value_states[:, :, 0]
        self.keys = self.key_buffer[: cache.rows, :, : cache.length + 1]
        self.values = self.value_buffer[: cache.rows, :, : cache.length + 1]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.cache.length


class BatchCache(DynamicCache):
    """The cache of the running batch; the engine drives it with add_rows, next_step, advance, remove_rows."""

    def __init__(self, num_layers: int, max_rows: int) -> None:
        super().__init__()
        self.layers = [SlotLayer(self) for _ in range(num_layers)]
        self.layer_class_to_replicate = None
        self.max_rows = max_rows
        self.rows = 0
        self.lengths: list[int] = []  # tokens held by each row
        self.length = 0  # the longest row's length
        self.mask: torch.Tensor | None = None  # [row capacity, column capacity], 1 where a row holds a token
        self.row_index: torch.Tensor | None = None  # set by next_step for the layers' in-place writes
        self.columns: torch.Tensor | None = None

    def add_rows(self, prefilled: DynamicCache, prompt_lengths: list[int]) -> None:
        """Copy a left-padded prefill of ``len(prompt_lengths)`` prompts into new rows at the end."""
        count, width = len(prompt_lengths), prefilled.layers[0].keys.shape[-2]
        first = self.rows
        self._reserve(first + count, max(prompt_lengths), prefilled)
        device = self.mask.device
        lengths = torch.tensor(prompt_lengths, device=device)
        columns = torch.arange(width, device=device)
        # shift each row left by its padding, so that its first real token lands in column 0
        source = (columns[None, :] + (width - lengths)[:, None]).clamp(max=width - 1)
        for layer, new in zip(self.layers, prefilled.layers, strict=True):
            index = source[:, None, :, None].expand_as(new.keys)
            layer.key_buffer[first : first + count, :, :width] = new.keys.gather(2, index)
            layer.value_buffer[first : first + count, :, :width] = new.values.gather(2, index)
        self.mask[first : first + count] = 0
        self.mask[first : first + count, :width] = columns[None, :] < lengths[:, None]
        self.rows += count
        self.lengths += prompt_lengths
        self.length = max(self.lengths)

    def next_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Make room for one more token per row; the attention mask and position ids of that step."""
        self._reserve(self.rows, self.length + 1)
        device = self.mask.device
        self.row_index = torch.arange(self.rows, device=device)
        self.columns = torch.tensor(self.lengths, device=device)
        self.mask[self.row_index, self.columns] = 1
        return self.mask[: self.rows, : self.length + 1], self.columns[:, None]

    def advance(self) -> None:
        """Count the token that the step just written into every row."""
        self.lengths = [length + 1 for length in self.lengths]
        self.length += 1

    def remove_rows(self, drop: list[int]) -> list[int]:
        """Drop rows, moving the last rows into the holes; the old index of each remaining row, in order."""
        remaining = self.rows - len(drop)
        dropped = set(drop)
        holes = [index for index in range(remaining) if index in dropped]
        movers = [index for index in range(remaining, self.rows) if index not in dropped]
        order = list(range(remaining))
        if holes:
            to = torch.tensor(holes, device=self.mask.device)
            source = torch.tensor(movers, device=self.mask.device)
            for layer in self.layers:
                layer.key_buffer[to, :, : self.length] = layer.key_buffer[source, :, : self.length]
                layer.value_buffer[to, :, : self.length] = layer.value_buffer[source, :, : self.length]
            self.mask[to] = self.mask[source]
            for hole, mover in zip(holes, movers, strict=True):
                order[hole] = mover
        self.lengths = [self.lengths[index] for index in order]
        self.rows = remaining
        self.length = max(self.lengths, default=0)
        return order

    def _reserve(self, rows: int, columns: int, like: DynamicCache | None = None) -> None:
        """Grow the buffers (a copy) if ``rows`` rows of ``columns`` tokens do not fit."""
        old_rows, old_columns = self.mask.shape if self.mask is not None else (0, 0)
        if rows <= old_rows and columns <= old_columns:
            return
        new_rows = old_rows if rows <= old_rows else max(rows, min(self.max_rows, 2 * old_rows))
        new_columns = old_columns if columns <= old_columns else max(columns + HEADROOM, old_columns * 3 // 2)
        for index, layer in enumerate(self.layers):
            if layer.key_buffer is None:  # the first rows: shapes, dtype and device come from their prefill
                template = like.layers[index]
                layer.key_buffer = _zeros(template.keys, new_rows, new_columns)
                layer.value_buffer = _zeros(template.values, new_rows, new_columns)
                layer.is_initialized = True
                layer.dtype, layer.device = template.keys.dtype, template.keys.device
                continue
            keys = _zeros(layer.key_buffer, new_rows, new_columns)
            values = _zeros(layer.value_buffer, new_rows, new_columns)
            keys[: self.rows, :, : self.length] = layer.key_buffer[: self.rows, :, : self.length]
            values[: self.rows, :, : self.length] = layer.value_buffer[: self.rows, :, : self.length]
            layer.key_buffer, layer.value_buffer = keys, values
        device = self.layers[0].key_buffer.device
        mask = torch.zeros(new_rows, new_columns, dtype=torch.long, device=device)
        if self.mask is not None:
            mask[: self.rows, : self.length] = self.mask[: self.rows, : self.length]
        self.mask = mask


def _zeros(like: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """Zeros, not garbage: masked columns are still read by attention, and 0 x NaN would be NaN."""
    return like.new_zeros(rows, like.shape[1], columns, like.shape[3])
