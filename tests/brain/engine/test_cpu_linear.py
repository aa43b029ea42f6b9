from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from brain.engine.cpu_linear import PackedLinear, onednn_available, pack_linears

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN")


def test_packed_model_computes_what_the_plain_one_does(tiny_model_dir: Path) -> None:
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    packed = copy.deepcopy(plain)
    assert pack_linears(packed) > 0
    assert isinstance(packed.lm_head, PackedLinear) and isinstance(packed.lm_head, torch.nn.Linear)
    ids = torch.randint(3, 500, (3, 17))
    with torch.no_grad():
        assert torch.allclose(packed(ids).logits, plain(ids).logits, atol=1e-4, rtol=1e-4)
        greedy = plain.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
        assert torch.equal(packed.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0), greedy)


def test_packed_model_still_trains_copies_and_sees_new_weights(tiny_model_dir: Path) -> None:
    packed = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    pack_linears(packed)
    ids = torch.randint(3, 500, (2, 9))
    packed(ids, labels=ids).loss.backward()  # autograd takes the ordinary path
    assert packed.lm_head.weight.grad is not None

    copied = copy.deepcopy(packed).eval()
    other = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        copied(ids)  # packs the copy's weights
        for parameter in other.parameters():
            parameter.mul_(0.5)
        copied.load_state_dict(other.state_dict())  # a weight reload: packed copies must follow
        assert torch.allclose(copied(ids).logits, other(ids).logits, atol=1e-4, rtol=1e-4)
