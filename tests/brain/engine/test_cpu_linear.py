from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from brain.engine.cpu_linear import PackedLinear, int4_available, onednn_available, pack_linears

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


def test_packing_keeps_the_models_own_parameters_and_their_ties(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {name: id(parameter) for name, parameter in model.named_parameters(remove_duplicate=False)}
    assert model.lm_head.weight is model.get_input_embeddings().weight, "the tiny model ties its output layer"

    pack_linears(model)

    assert {name: id(parameter) for name, parameter in model.named_parameters(remove_duplicate=False)} == before
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert isinstance(model.get_output_embeddings(), PackedLinear)
    assert not [name for name, module in model.named_modules() if type(module) is torch.nn.Linear]


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


@pytest.mark.skipif(not int4_available(), reason="4-bit weights need a CPU with bfloat16 instructions")
def test_four_bit_weights_serve_few_rows_and_only_where_they_lose_nothing(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).eval()
    layers = model.model.layers[0].mlp
    with torch.no_grad():  # one layer whose weights are 4-bit values already, as a 4-bit GGUF's are
        steps = torch.randint(0, 16, layers.up_proj.weight.shape).float()
        steps[:, ::32], steps[:, 1::32] = 0, 15  # each group of 32 spans the 16 steps, as Q4_1's blocks do
        layers.up_proj.weight.copy_(steps / 64 - 0.125)
    dense = copy.deepcopy(model)
    pack_linears(model, int4="lossless")
    kept = {name: module.few_rows for name, module in model.named_modules() if isinstance(module, PackedLinear)}
    assert {name: kind for name, kind in kept.items() if kind} == {
        "model.layers.0.mlp.up_proj": "int4",
        "lm_head": "int8",
    }

    pack_linears(everywhere := copy.deepcopy(dense), int4="on")
    assert everywhere.lm_head.few_rows == "int8", "the output layer decides every token: never 4-bit"
    assert everywhere.model.layers[1].self_attn.q_proj.few_rows == "int4"
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    pack_linears(plain, int4="lossless")
    assert not any(isinstance(m, PackedLinear) and m.few_rows for m in plain.modules()), "random weights are not 4-bit"
    x = torch.randn(1, 1, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        one_row = model.model.layers[0].mlp.up_proj(x)
        assert torch.allclose(one_row.float(), dense.model.layers[0].mlp.up_proj(x).float(), atol=0.02, rtol=0.02)
        # decoding, one row a step (the 4-bit and 8-bit copies' path), scores as the dense model does. Not the
        # same greedy tokens: a random bfloat16 model has exact ties among its top scores, which any other
        # order of summing breaks either way (the default model's replies are compared in bench/weights.py)
        ids = torch.randint(3, 500, (1, 9))
        greedy = dense.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
        served, reference = decoded_scores(model, greedy), decoded_scores(dense, greedy)
        assert torch.allclose(served, reference, atol=0.1), (served - reference).abs().max()
        top = reference.topk(2).values
        clear = top[:, 0] - top[:, 1] > 0.2  # where the dense model's choice is not a near tie, the same choice
        assert torch.equal(served.argmax(-1)[clear], reference.argmax(-1)[clear])


def decoded_scores(model: torch.nn.Module, ids: torch.Tensor, prompt: int = 9) -> torch.Tensor:
    """The scores of each token after the prompt, decoded one row at a time with the cache."""
    out = model(ids[:, :prompt], use_cache=True)
    scores = [out.logits[0, -1]]
    for position in range(prompt, ids.shape[1] - 1):
        out = model(ids[:, position : position + 1], cache=out.past_key_values, use_cache=True)
        scores.append(out.logits[0, -1])
    return torch.stack(scores).float()
