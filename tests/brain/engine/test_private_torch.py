"""The private PyTorch kernels the engine's CPU layers use (brain.engine.private_torch) are there and compute what
the engine expects: a PyTorch release that renames or changes one fails here, naming it, rather than leaving the
engine on its slower plain products unnoticed."""

from __future__ import annotations

import pytest
import torch

from brain.engine import private_torch


def test_the_installed_torch_has_the_private_kernels_the_engine_uses() -> None:
    assert private_torch.low_bit_available(), f"torch {torch.__version__} lacks the 4-bit or 8-bit weight kernels"
    if torch.backends.mkldnn.is_available():
        assert private_torch.onednn_available(), f"torch {torch.__version__} lacks oneDNN's packed linear operators"
    private_torch.check_torch()  # raises TorchKernelsChanged, naming the kernel, if one computes something else


def test_a_kernel_that_computes_something_else_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    int4 = private_torch.matmul_int4
    monkeypatch.setattr(private_torch, "matmul_int4", lambda rows, packed, scales: int4(rows, packed, scales.flip(-1)))

    with pytest.raises(private_torch.TorchKernelsChanged, match="4-bit weights computes something else"):
        private_torch.check_torch()
