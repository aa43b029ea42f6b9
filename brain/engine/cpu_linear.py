"""Faster float32 and bfloat16 linear layers for CPU inference: oneDNN with weights packed once.

PyTorch multiplies float32 matrices on CPU with MKL, which is slow for the short, wide products of
batched decoding on some CPUs (on an AMD EPYC, 16-32 rows against SmolLM2's weights ran 2-3 times
slower than oneDNN's kernels; a prefill about 2 times). oneDNN's kernels want their weights in a
packed layout; ``PackedLinear`` packs each weight once and keeps the dense one, so the model still
trains, saves, moves to another device and takes peft LoRA adapters as before (the class is still an
``nn.Linear``). The packed path runs only for CPU inputs of the weight's own dtype (float32, or
bfloat16 on a CPU with bfloat16 instructions: AMX or AVX512-BF16) without autograd, and the weight is
packed again when its tensor is replaced or changed in place through autograd-visible operations
(an in-place change through ``.data`` goes unseen: call ``repack`` after one).

Costs: a second copy of every linear weight in memory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from torch import nn


def onednn_available() -> bool:
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


@cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16): then bfloat16 weights halve the
    bytes read per token without emulation. Read from /proc/cpuinfo; False where there is none."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return onednn_available() and any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` that multiplies with a oneDNN-packed copy of its weight when it can."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if torch.is_grad_enabled() or x.dtype != weight.dtype or x.device.type != "cpu" or weight.is_meta:
            return super().forward(x)
        key = (weight.data_ptr(), weight._version)
        if self.__dict__.get("_packed_key") != key:
            self.repack()
        return torch.ops.mkldnn._linear_pointwise(x, self.__dict__["_packed"], self.bias, "none", [], "")

    def repack(self) -> None:
        self.__dict__["_packed"] = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None)
        self.__dict__["_packed_key"] = (self.weight.data_ptr(), self.weight._version)

    def __getstate__(self) -> dict:
        # copies and pickles carry the dense weight only; the packed one is rebuilt on first use
        state = super().__getstate__()
        return {name: value for name, value in state.items() if name not in ("_packed", "_packed_key")}


def pack_linears(model: nn.Module) -> int:
    """Turn every float32 or bfloat16 CPU ``nn.Linear`` of ``model`` into a PackedLinear; how many were turned."""
    if not onednn_available():
        return 0
    count = 0
    for module in model.modules():
        weight = module.weight if type(module) is nn.Linear else None
        if weight is not None and weight.device.type == "cpu" and _packable(weight.dtype):
            module.__class__ = PackedLinear
            with torch.no_grad():
                module.repack()
            count += 1
    return count


def _packable(dtype: torch.dtype) -> bool:
    return dtype == torch.float32 or (dtype == torch.bfloat16 and cpu_has_bf16())
