"""A decoding step of a Llama-family model in plain tensor operations: the engine's fast path on a CPU.

On a CPU, a small model's decoding step of one or a few rows spends a good part of its time in
transformers' per-module Python (keyword plumbing, output records, a mask and cache bookkeeping it does
not need here) and in small operators around the products (bench/results/decode_profile.md).
``LeanDecoder`` runs the same arithmetic, in the same order and dtypes, so it picks the same tokens,
with what a decoding row needs only:

- the q, k and v projections are one product, and gate and up another: each output row is computed as
  before, so the scores are the same bit for bit;
- queries and keys are rotated together, in one set of operations;
- the attention is the engine's own (:func:`brain.engine.attention.decode_attention`), called directly;
- RMSNorm is one call (``F.rms_norm`` in float32, as transformers computes it).

The fused products multiply one weight tensor in which the parts' weights lie side by side: each part's
weight is a view of its rows. :func:`lay_out_projections` arranges that when the model loads, before
its layers are packed (brain.engine.model_loading), so fusing costs the fused layers' packed copies only;
a model loaded otherwise is arranged when its decoder is first built (then the parts are packed again).

It serves plain transformers models of the Llama layout (``llama``, ``mistral``, ``qwen2``) on a CPU;
any other model, a peft model (LoRA adapters change the projections) or another device keeps the
generic forward pass (:meth:`LeanDecoder.of` returns None). Prefill always takes the generic path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from brain.engine.attention import decode_attention
from brain.engine.cpu_linear import PackedLinear
from brain.engine.kv_cache import DecodePlan

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
_NORMS = ("input_layernorm", "post_attention_layernorm")
# one decoder per model, shared by the engines that serve it (each one's fused layers cost memory)
_DECODERS: weakref.WeakKeyDictionary[nn.Module, LeanDecoder] = weakref.WeakKeyDictionary()


@dataclass
class _Layer:
    input_norm: torch.Tensor
    input_eps: float
    qkv: Callable[[torch.Tensor], torch.Tensor]  # [rows, 1, hidden] -> [rows, 1, q + 2 * kv]
    o_proj: nn.Module
    post_norm: torch.Tensor
    post_eps: float
    gate_up: Callable[[torch.Tensor], torch.Tensor]  # [rows, 1, hidden] -> [rows, 1, 2 * intermediate]
    down_proj: nn.Module
    act: Callable[[torch.Tensor], torch.Tensor]


class LeanDecoder:
    """One token per row through a model (see the module docstring); get one with :meth:`of`."""

    def __init__(self, model: Any, *, fuse: bool = True) -> None:
        inner = model.model
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.q_size = self.heads * self.head_dim
        self.kv_size = self.kv_heads * self.head_dim
        self.intermediate = config.intermediate_size
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.final_norm = inner.norm.weight
        self.final_eps = float(inner.norm.variance_epsilon)
        self.lm_head = model.lm_head
        self.scaling = float(inner.layers[0].self_attn.scaling)
        self.layers = [self._layer(layer, fuse) for layer in inner.layers]
        # the weights it holds itself (the norms') or through a fused copy (the parts'): one replaced by another
        # tensor makes the decoder stale (a change in place shows through: a norm's tensor is the one it holds,
        # a part's weight a view of the fused one); the other layers it calls, as they are now
        held = [inner.norm, *[getattr(layer, name) for layer in inner.layers for name in _NORMS]]
        held += [part for layer in inner.layers for parts in _fusable(layer) for part in parts]
        self._held = [(module._parameters, module.weight, module.weight.data_ptr()) for module in held]

    @classmethod
    def of(cls, model: Any, device: torch.device) -> LeanDecoder | None:
        """The lean decoder of ``model`` (built once per model), or None where it keeps the generic forward pass."""
        if device.type != "cpu" or not _llama_layout(model):
            return None
        decoder = _DECODERS.get(model)
        if decoder is None or decoder.stale:
            decoder = _DECODERS[model] = cls(model)
        return decoder

    @property
    def stale(self) -> bool:
        """Whether a weight it holds was replaced since it was built (then build another)."""
        return any(
            parameters["weight"] is not weight or weight.data_ptr() != pointer
            for parameters, weight, pointer in self._held
        )

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, plan: DecodePlan) -> torch.Tensor:
        """The scores ``[rows, vocab]`` of the next token after ``ids`` (``[rows, 1]``) at ``positions``."""
        rows = ids.shape[0]
        hidden = self.embed(ids)
        cos, sin = self.rotary(hidden, positions)
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # [rows, 1 token, 1 head, head dim]
        heads, head_dim, q_size, kv_size = self.heads, self.head_dim, self.q_size, self.kv_size
        for index, layer in enumerate(self.layers):
            qkv = layer.qkv(_rms_norm(hidden, layer.input_norm, layer.input_eps))
            # queries and keys rotated together: [rows, 1 token, heads + kv heads, head dim]
            rotated = qkv[..., : q_size + kv_size].view(rows, 1, heads + self.kv_heads, head_dim)
            rotated = (rotated * cos + _rotate_half(rotated) * sin).transpose(1, 2)
            value = qkv[..., q_size + kv_size :].view(rows, 1, self.kv_heads, head_dim).transpose(1, 2)
            attended = decode_attention(index, rotated[:, :heads], rotated[:, heads:], value, plan, self.scaling)
            hidden = hidden + layer.o_proj(attended.transpose(1, 2).reshape(rows, 1, q_size))
            gate_up = layer.gate_up(_rms_norm(hidden, layer.post_norm, layer.post_eps))
            gate, up = gate_up[..., : self.intermediate], gate_up[..., self.intermediate :]
            hidden = hidden + layer.down_proj(layer.act(gate) * up)
        return self.lm_head(_rms_norm(hidden, self.final_norm, self.final_eps))[:, -1]

    def _layer(self, layer: Any, fuse: bool) -> _Layer:
        attention, mlp = layer.self_attn, layer.mlp
        return _Layer(
            input_norm=layer.input_layernorm.weight,
            input_eps=float(layer.input_layernorm.variance_epsilon),
            qkv=_joined([attention.q_proj, attention.k_proj, attention.v_proj], fuse),
            o_proj=attention.o_proj,
            post_norm=layer.post_attention_layernorm.weight,
            post_eps=float(layer.post_attention_layernorm.variance_epsilon),
            gate_up=_joined([mlp.gate_proj, mlp.up_proj], fuse),
            down_proj=mlp.down_proj,
            act=mlp.act_fn,
        )


def lay_out_projections(model: Any) -> bool:
    """Put each layer's q, k and v weights (and gate and up) side by side in one tensor, each part's weight a
    view of its rows, for the lean decoder's fused products; before packing (see the module docstring).
    Whether ``model`` has the layout the lean decoder serves (False: nothing changed)."""
    if not _llama_layout(model):
        return False
    for layer in model.model.layers:
        for parts in _fusable(layer):
            if _side_by_side(parts) is None:
                _lay_out(parts)
    return True


def _fusable(layer: Any) -> list[list[nn.Linear]]:
    attention, mlp = layer.self_attn, layer.mlp
    return [[attention.q_proj, attention.k_proj, attention.v_proj], [mlp.gate_proj, mlp.up_proj]]


def _llama_layout(model: Any) -> bool:
    """Whether ``model`` is a plain transformers model whose layers are exactly the Llama decoder layer's."""
    config = getattr(model, "config", None)
    inner = getattr(model, "model", None)
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES or inner is None:
        return False
    if getattr(config, "pretraining_tp", 1) != 1 or getattr(model, "peft_config", None):
        return False
    if getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None):
        return False  # the engine never lets the window slide, but the layers would still build its mask
    parts = ("embed_tokens", "layers", "norm", "rotary_emb")
    if not all(hasattr(inner, part) for part in parts) or not isinstance(getattr(model, "lm_head", None), nn.Linear):
        return False
    for layer in inner.layers:
        names = {name for name, _ in layer.named_children()}
        if names != {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"}:
            return False
        attention, mlp = layer.self_attn, layer.mlp
        if {name for name, _ in attention.named_children()} != {"q_proj", "k_proj", "v_proj", "o_proj"}:
            return False
        if {name for name, _ in mlp.named_children()} - {"act_fn"} != {"gate_proj", "up_proj", "down_proj"}:
            return False
        linears = [*_fusable(layer)[0], attention.o_proj, *_fusable(layer)[1], mlp.down_proj]
        if not all(type(linear) in (nn.Linear, PackedLinear) for linear in linears):
            return False
        if not all(hasattr(getattr(layer, norm), "variance_epsilon") for norm in _NORMS):
            return False
    return True


def _joined(linears: list[nn.Linear], fuse: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """One callable giving the outputs of ``linears`` side by side: a fused layer where that gives the same
    numbers (packed layers that serve few rows alike), else the layers one after another."""
    kinds = {linear.few_rows if isinstance(linear, PackedLinear) else "plain" for linear in linears}
    biases = [linear.bias for linear in linears]
    if not fuse or len(kinds) != 1 or "plain" in kinds or len({bias is None for bias in biases}) != 1:
        return lambda hidden: torch.cat([linear(hidden) for linear in linears], dim=-1)
    weight = _side_by_side(linears)
    if weight is None:  # a model that did not load through load_serving_model: arrange it now
        weight = _lay_out(linears)
        for linear in linears:
            assert isinstance(linear, PackedLinear)  # kinds says so
            linear.repack()
    plain = nn.Linear(weight.shape[1], weight.shape[0], bias=biases[0] is not None, device="meta")
    plain.weight = nn.Parameter(weight, requires_grad=False)
    if biases[0] is not None:
        bias = torch.cat([bias.detach() for bias in biases if bias is not None])
        plain.bias = nn.Parameter(bias, requires_grad=False)
    # every part keeps a 4-bit copy, or none does: the fused one keeps the same values
    fused = PackedLinear.of(plain, "on" if kinds == {"int4"} else "off")
    with torch.no_grad():
        fused.repack()
    return fused


def _side_by_side(linears: list[nn.Linear]) -> torch.Tensor | None:
    """The one tensor whose rows are the weights of ``linears`` in order, if they lie so; else None."""
    weights = [linear.weight.detach() for linear in linears]
    first = weights[0]
    offset = first.storage_offset()
    for weight in weights:
        if (
            not weight.is_contiguous()
            or weight.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
            or weight.storage_offset() != offset
            or weight.shape[1:] != first.shape[1:]
            or weight.dtype != first.dtype
        ):
            return None
        offset += weight.numel()
    rows = sum(weight.shape[0] for weight in weights)
    return first.as_strided((rows, first.shape[1]), (first.shape[1], 1), first.storage_offset())


def _lay_out(linears: list[nn.Linear]) -> torch.Tensor:
    """Copy the weights of ``linears`` into one tensor and make each a view of its rows; that tensor."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    start = 0
    for linear in linears:
        end = start + linear.weight.shape[0]
        linear.weight = nn.Parameter(weight[start:end], requires_grad=linear.weight.requires_grad)
        start = end
    return weight


def _rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Transformers' Llama RMSNorm: normalised in float32, back to the input's dtype, then scaled."""
    return weight * F.rms_norm(hidden.float(), (hidden.shape[-1],), eps=eps).to(hidden.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
