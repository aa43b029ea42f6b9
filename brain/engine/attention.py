"""The attention that reads and writes the running batch's cache (brain/engine/kv_cache.py) in place.

The model reads it through an attention function registered with transformers under
``ATTENTION_NAME``: the engine passes a plan with every forward pass (``rows_plan=``), and the
attention writes each row's new keys and values into its place and attends over that row's tokens
only, so no padding mask is built or read:

- a decode step (one new token per row) runs one attention call per group, the batch's rows ordered
  group by group (``RowCache.order``);
- a prefill runs one call per row, over the keys already in place (a reused prefix) and its new ones.

Without a plan (``model.generate``, beam search) the function is transformers' own SDPA attention.

On a CPU, a half-precision model's keys and values (a bfloat16 model) are attended in float32: PyTorch's CPU
attention kernel is several times slower in bfloat16 than in float32 on CPUs without AMX (an AMD EPYC with
AVX512-BF16: 1 us per cached token and layer against 0.15 us for one decoding row). The cache holds them in
float32 there (``KVShape.of``), so that each is converted once, when it is written.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from brain.engine.kv_cache import DecodePlan, PrefillPlan

ATTENTION_NAME = "ownchat_rows"


def rows_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    rows_plan: PrefillPlan | DecodePlan | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over the rows' own tokens (see the module docstring); ``[batch, tokens, heads, head dim]``."""
    if rows_plan is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    layer = cast(int, module.layer_idx)  # transformers sets it on every attention module
    if isinstance(rows_plan, DecodePlan):
        return decode_attention(layer, query, key, value, rows_plan, scaling).transpose(1, 2), None
    gqa = query.shape[1] != key.shape[1]
    output = query.new_zeros(query.shape)
    for index, row in enumerate(rows_plan.rows):
        keys, values = row.group.keys[layer], row.group.values[layer]
        end = row.reused + row.new
        keys[row.slot, :, row.reused : end] = key[index, :, row.pad :]
        values[row.slot, :, row.reused : end] = value[index, :, row.pad :]
        output[index : index + 1, :, row.pad :] = _attend(
            query[index : index + 1, :, row.pad :],
            keys[row.slot : row.slot + 1, :, :end],
            values[row.slot : row.slot + 1, :, :end],
            row.mask,
            scaling,
            gqa,
        )
    return output.transpose(1, 2), None


def decode_attention(
    layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, plan: DecodePlan, scaling: float | None
) -> torch.Tensor:
    """One decoding step's attention in ``layer``: each row's new key and value written into its place, then
    its query attends over its row; ``[rows, heads, 1, head dim]`` in and out (keys and values with kv heads)."""
    gqa = query.shape[1] != key.shape[1]
    outputs, start = [], 0
    for group in plan.groups:
        end = start + group.span
        keys, values = group.keys[layer], group.values[layer]
        if group.span == 1:  # one row: a plain copy into its column, no index tensors
            column = group.lengths[0]
            keys[0, :, column] = key[start, :, 0]
            values[0, :, column] = value[start, :, 0]
        else:
            keys[group.slots, :, group.columns] = key[start:end, :, 0].to(keys.dtype)
            values[group.slots, :, group.columns] = value[start:end, :, 0].to(values.dtype)
        outputs.append(
            _attend(
                query[start:end],
                keys[: group.span, :, : group.longest],
                values[: group.span, :, : group.longest],
                group.step_mask,
                scaling,
                gqa,
                causal=False,
            )
        )
        start = end
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _attend(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float | None,
    gqa: bool,
    *,
    causal: bool = True,
) -> torch.Tensor:
    """SDPA, in float32 for half-precision inputs on a CPU (see the module docstring); causal without a mask
    unless ``causal`` is False."""
    dtype = query.dtype
    if query.device.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
        query, keys, values = query.float(), keys.float(), values.float()
    output = F.scaled_dot_product_attention(
        query, keys, values, attn_mask=mask, is_causal=causal and mask is None, scale=scaling, enable_gqa=gqa
    )
    return output.to(dtype)


AttentionInterface.register(ATTENTION_NAME, rows_attention)


def use_rows_attention(model: PreTrainedModel) -> None:
    """Make ``model`` attend through :func:`rows_attention` (which falls back to SDPA without a plan)."""
    config = model.config
    if config._attn_implementation != ATTENTION_NAME:
        config._attn_implementation = ATTENTION_NAME
        for sub in config.sub_configs:
            sub_config = getattr(config, sub, None)
            if sub_config is not None:
                sub_config._attn_implementation = ATTENTION_NAME
