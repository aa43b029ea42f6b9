"""Faster linear layers for CPU inference: oneDNN with weights packed once, and 4-bit weights for few rows.

PyTorch multiplies float32 matrices on CPU with MKL, which is slow for the short, wide products of
batched decoding on some CPUs (on an AMD EPYC, 16-32 rows against SmolLM2's weights ran 2-3 times
slower than oneDNN's kernels; a prefill about 2 times). oneDNN's kernels want their weights in a
packed layout; ``PackedLinear`` packs each weight once and keeps the dense one, so the model still
trains, saves, moves to another device and takes peft LoRA adapters as before (the class is still an
``nn.Linear``). The packed path runs only for CPU inputs of the weight's own dtype (float32, or
bfloat16 on a CPU with bfloat16 instructions: AMX or AVX512-BF16) without autograd, and the weight is
packed again when its tensor is replaced or changed in place through autograd-visible operations
(an in-place change through ``.data`` goes unseen: call ``repack`` after one).

Decoding one or a few rows reads every weight once per token, so its speed is the weights' size. A
bfloat16 layer may also keep a 4-bit copy (groups of 32 inputs, each with its own scale and minimum,
the layout of llama.cpp's Q4_1) that serves products of at most ``INT4_MAX_ROWS`` rows: about 3 times
faster than bfloat16 for one row on a Xeon with AMX, slower for many rows, which keep the bfloat16
path. ``int4="lossless"`` keeps that copy only where the weights already are 4-bit values (a model
converted from a 4-bit GGUF, such as the default one: at most ``LOSSLESS_STEPS`` of a step off);
``int4="on"`` everywhere but the output layer (bench/weights.py states the perplexity of each). Where
4-bit copies are kept, the output layer, whose scores decide every token, keeps an 8-bit one instead
(one scale per output row), about twice as fast as bfloat16 for one row.

Costs: a second copy of every linear weight in memory, and the 4-bit one where it is kept.

The kernels have no public name in PyTorch: brain.engine.private_torch is the one module that calls them (and
says so loudly when a release changes them). ``pack_linears`` puts a PackedLinear in each layer's place, sharing
the layer's parameters, as ``nn.Module.set_submodule`` does for any module.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from torch import nn

from brain.engine import private_torch
from brain.engine.private_torch import INT4_GROUP, onednn_available

INT4_MAX_ROWS = 4
LOSSLESS_STEPS = 0.05  # the largest error, in quantization steps, of a weight that is "already 4-bit"


@cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16): then bfloat16 weights halve the
    bytes read per token without emulation. Read from /proc/cpuinfo; False where there is none."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return onednn_available() and any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def int4_available() -> bool:
    return cpu_has_bf16() and private_torch.low_bit_available()


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` that multiplies with a oneDNN-packed copy of its weight when it can."""

    @classmethod
    def of(cls, linear: nn.Linear, few_rows: str = "off") -> PackedLinear:
        """A PackedLinear with ``linear``'s own parameters (the same tensors: shared and tied weights stay so).

        ``few_rows``: the copy that serves products of few rows: "off", "lossless" or "on" (4-bit, see the
        module docstring), or "int8"."""
        packed = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        packed.weight = linear.weight
        packed.bias = linear.bias
        packed.train(linear.training)
        packed.__dict__["_small_mode"] = few_rows
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if torch.is_grad_enabled() or x.dtype != weight.dtype or x.device.type != "cpu" or weight.is_meta:
            return super().forward(x)
        key = (weight.data_ptr(), private_torch.version(weight))
        if self.__dict__.get("_packed_key") != key:
            self.repack()
        small = self.__dict__.get("_small")
        if small is not None and x.numel() <= INT4_MAX_ROWS * x.shape[-1]:
            kind, packed, scales = small
            rows = x.reshape(-1, x.shape[-1])
            if kind == "int4":
                y = private_torch.matmul_int4(rows, packed, scales)
            else:
                y = private_torch.matmul_int8(rows, packed, scales)
            y = y.reshape(*x.shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias
        return private_torch.linear_onednn(x, self.__dict__["_packed"], self.bias)

    def repack(self) -> None:
        weight = self.weight.detach()
        self.__dict__["_packed"] = private_torch.pack_onednn(weight)
        self.__dict__["_packed_key"] = (self.weight.data_ptr(), private_torch.version(self.weight))
        mode = self.__dict__.get("_small_mode", "off")
        small = None
        if mode == "int8" and weight.dtype == torch.bfloat16 and int4_available():
            small = ("int8", *quantize_int8(weight))
        elif mode in ("lossless", "on") and weight.dtype == torch.bfloat16:
            quantized = quantize_int4(weight)
            if quantized is not None and (mode == "on" or quantized[2] <= LOSSLESS_STEPS):
                small = ("int4", *quantized[:2])
        self.__dict__["_small"] = small

    @property
    def few_rows(self) -> str | None:
        """The copy that serves products of few rows: "int4", "int8", or None (the packed weight serves all)."""
        small = self.__dict__.get("_small")
        return small[0] if small is not None else None

    def __getstate__(self) -> dict:
        # copies and pickles carry the dense weight only; the packed ones are rebuilt on first use
        state = super().__getstate__()
        return {name: value for name, value in state.items() if name not in ("_packed", "_packed_key", "_small")}


def quantize_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """The packed 4-bit weight, its scales and minimums, and the largest error in steps; None if it cannot be."""
    out_features, in_features = weight.shape
    if in_features % INT4_GROUP or out_features % 8 or not int4_available():
        return None
    groups = weight.float().reshape(out_features, in_features // INT4_GROUP, INT4_GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-12)
    steps = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15)
    error = ((steps * scale[..., None] + low[..., None] - groups).abs() / scale[..., None]).amax().item()
    packed = private_torch.pack_int4(steps.to(torch.int32).reshape(weight.shape))
    # the kernel computes (q - 8) * scale + zero
    scales = torch.stack([scale, low + 8 * scale], -1).transpose(0, 1).contiguous().to(weight.dtype)
    return packed, scales, error


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8-bit weight and one scale per output row."""
    scale = (weight.float().abs().amax(-1) / 127).clamp(min=1e-12)
    steps = torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return steps, scale.to(weight.dtype)


def pack_linears(model: nn.Module, int4: str = "off") -> int:
    """Put a PackedLinear in place of every float32 or bfloat16 CPU ``nn.Linear`` inside ``model`` (a plain
    ``nn.Linear``, not a subclass), with the layer's own parameters; how many layers were put in place.

    ``int4``: "off", "lossless" or "on" (see the module docstring); never for the output layer, whose
    scores decide every token: it keeps an 8-bit copy where the others keep 4-bit ones."""
    if not onednn_available():
        return 0
    get_output = getattr(model, "get_output_embeddings", None)  # a transformers model's; not every module's
    output = get_output() if get_output is not None else None
    places = [
        (name, module)
        for name, module in model.named_modules(remove_duplicate=False)
        if name and type(module) is nn.Linear and module.weight.device.type == "cpu" and _packable(module.weight.dtype)
    ]
    places.sort(key=lambda place: place[1] is output)  # the output layer last: it follows what the others keep
    packed: dict[int, PackedLinear] = {}  # by the layer it replaces: a layer found under two names stays one layer
    for name, linear in places:
        if id(linear) not in packed:
            few_rows = int4
            if linear is output:
                few_rows = "int8" if any(layer.few_rows for layer in packed.values()) else "off"
            packed[id(linear)] = PackedLinear.of(linear, few_rows)
            with torch.no_grad():
                packed[id(linear)].repack()
        model.set_submodule(name, packed[id(linear)])
    return len(packed)


def _packable(dtype: torch.dtype) -> bool:
    return dtype == torch.float32 or (dtype == torch.bfloat16 and cpu_has_bf16())
