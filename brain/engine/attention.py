"""The attention that reads and writes the running batch's cache (brain/engine/kv_cache.py) in place.

The model reads it through an attention function registered with transformers under
``ATTENTION_NAME``: the engine passes a plan with every forward pass (``rows_plan=``), and the
attention writes each row's new keys and values into its place and attends over that row's tokens
only, so no padding mask is built or read:

- a decode step (one new token per row) runs one attention call per group, the batch's rows ordered
  group by group (``RowCache.order``);
- a prefill runs one call per row, over the keys already in place (a reused prefix) and its new ones.

Without a plan (``model.generate``, beam search) the function is transformers' own SDPA attention.
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
    gqa = query.shape[1] != key.shape[1]
    if isinstance(rows_plan, DecodePlan):
        outputs, start = [], 0
        for group in rows_plan.groups:
            end = start + group.span
            keys, values = group.keys[layer], group.values[layer]
            keys[group.slots, :, group.columns] = key[start:end, :, 0]
            values[group.slots, :, group.columns] = value[start:end, :, 0]
            outputs.append(
                F.scaled_dot_product_attention(
                    query[start:end],
                    keys[: group.span, :, : group.longest],
                    values[: group.span, :, : group.longest],
                    attn_mask=group.step_mask,
                    scale=scaling,
                    enable_gqa=gqa,
                )
            )
            start = end
        output = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return output.transpose(1, 2), None
    output = query.new_zeros(query.shape)
    for index, row in enumerate(rows_plan.rows):
        keys, values = row.group.keys[layer], row.group.values[layer]
        end = row.reused + row.new
        keys[row.slot, :, row.reused : end] = key[index, :, row.pad :]
        values[row.slot, :, row.reused : end] = value[index, :, row.pad :]
        output[index : index + 1, :, row.pad :] = F.scaled_dot_product_attention(
            query[index : index + 1, :, row.pad :],
            keys[row.slot : row.slot + 1, :, :end],
            values[row.slot : row.slot + 1, :, :end],
            attn_mask=row.mask,
            is_causal=row.mask is None,
            scale=scaling,
            enable_gqa=gqa,
        )
    return output.transpose(1, 2), None


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
