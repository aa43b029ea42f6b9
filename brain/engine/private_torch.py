"""The one place the engine calls PyTorch past its documented API: CPU kernels that have no public name.

brain.engine.cpu_linear multiplies with weights prepared once, through kernels PyTorch ships but names only as
private operators:
- oneDNN's packed linear: ``torch.ops.mkldnn._reorder_linear_weight`` packs a weight once,
  ``torch.ops.mkldnn._linear_pointwise`` multiplies with it (what ``torch.compile`` emits for a CPU linear);
- 4-bit weights: ``torch.ops.aten._convert_weight_to_int4pack_for_cpu`` and ``_weight_int4pack_mm_for_cpu``
  (the CPU kernels of PyTorch's int4 "tinygemm" layout). torchao's CPU int4 layout (0.18:
  ``torchao.prototype.quantization.int4``) calls these same operators, replaces the dense weight, and made a
  decoding step of the default model 10-12 % slower than this module's path (both in one process, alternating,
  medians of 200 and 400 steps on a loaded 2-core AMD EPYC with AVX512-BF16);
- 8-bit weights: ``torch.ops.aten._weight_int8pack_mm`` (one scale per output row);
- ``Tensor._version``, the counter of in-place changes, which tells that a packed copy is stale.
No public API gives these kernels for an ``nn.Linear`` that keeps its dense weight (for training, LoRA adapters
and products of many rows). Where an operator is missing, the engine falls back to PyTorch's plain linear, which
is correct but slower; so that a PyTorch release that renames or changes one is noticed rather than silently
slower, `check_torch()` runs each on a small product against the plain one and raises TorchKernelsChanged naming
what changed (tests/brain/engine/test_private_torch.py runs it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")

INT4_GROUP = 32  # inputs per 4-bit group, each with its own scale and zero


class TorchKernelsChanged(RuntimeError):
    """A private PyTorch operator the engine uses is gone or computes something else."""


def onednn_available() -> bool:
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def low_bit_available() -> bool:
    """Whether this PyTorch has the 4-bit and 8-bit weight kernels (fast only with bfloat16 instructions)."""
    return all(
        hasattr(torch.ops.aten, name)
        for name in ("_convert_weight_to_int4pack_for_cpu", "_weight_int4pack_mm_for_cpu", "_weight_int8pack_mm")
    )


def version(tensor: torch.Tensor) -> int:
    """How many times ``tensor`` was changed in place (through autograd-visible operations)."""
    return tensor._version


def pack_onednn(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, None)


def linear_onednn(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def pack_int4(steps: torch.Tensor) -> torch.Tensor:
    """Steps 0..15 of an (out, in) weight, as int32, in the kernel's packed layout."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(steps, 1)  # inner k tiles: unused on CPU


def matmul_int4(rows: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor) -> torch.Tensor:
    """``rows`` times the 4-bit weight; a step q of group g of output row n is (q - 8) * scale + zero, with
    ``scales_and_zeros[g, n] = (scale, zero)``."""
    return torch.ops.aten._weight_int4pack_mm_for_cpu(rows, packed, INT4_GROUP, scales_and_zeros)


def matmul_int8(rows: torch.Tensor, steps: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``rows`` times the 8-bit weight ``steps`` (out, in), output row n scaled by ``scales[n]``."""
    return torch.ops.aten._weight_int8pack_mm(rows, steps, scales)


def check_torch() -> None:
    """Raise TorchKernelsChanged unless each operator above exists and computes a small product as documented here."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 64, generator=generator)
    if torch.backends.mkldnn.is_available():
        weight, bias = torch.randn(16, 64, generator=generator), torch.randn(16, generator=generator)
        _check("oneDNN linear", lambda: linear_onednn(x, pack_onednn(weight), bias), x @ weight.T + bias)
    steps = torch.randint(0, 16, (16, 64), generator=generator, dtype=torch.int32)
    scale = torch.rand(64 // INT4_GROUP, 16, generator=generator) / 8 + 0.01
    zero = torch.randn(64 // INT4_GROUP, 16, generator=generator) / 4
    dense = (steps.float() - 8).reshape(16, -1, INT4_GROUP) * scale.T[..., None] + zero.T[..., None]
    scales_and_zeros = torch.stack([scale, zero], -1).to(torch.bfloat16)
    rows = x.to(torch.bfloat16)
    expected = rows.float() @ dense.reshape(16, 64).T
    _check("4-bit weights", lambda: matmul_int4(rows, pack_int4(steps), scales_and_zeros), expected)
    int8 = torch.randint(-127, 128, (16, 64), generator=generator, dtype=torch.int8)
    row_scale = torch.rand(16, generator=generator) / 64
    expected = rows.float() @ (int8.float() * row_scale[:, None]).T
    _check("8-bit weights", lambda: matmul_int8(rows, int8, row_scale.to(torch.bfloat16)), expected)
    counted = torch.zeros(2)
    before = _attempt("Tensor._version", lambda: version(counted))
    counted.add_(1)
    if not isinstance(before, int) or version(counted) <= before:
        raise TorchKernelsChanged(f"torch {torch.__version__}: Tensor._version no longer counts in-place changes")


def _attempt(what: str, run: Callable[[], T]) -> T:
    try:
        return run()
    except (AttributeError, RuntimeError, TypeError) as error:
        raise TorchKernelsChanged(
            f"torch {torch.__version__}: {what} failed ({type(error).__name__}: {error}); "
            "brain/engine/private_torch.py must follow, the engine falls back to slower plain products meanwhile"
        ) from error


def _check(what: str, run: Callable[[], torch.Tensor], expected: torch.Tensor) -> None:
    got = _attempt(what, run)
    error = (got.float() - expected).abs().max().item()
    if got.shape != expected.shape or error > 0.05 * expected.abs().max().item():
        raise TorchKernelsChanged(
            f"torch {torch.__version__}: {what} computes something else (shape {tuple(got.shape)}, "
            f"largest error {error:.3g}); brain/engine/private_torch.py must follow"
        )
