"""The engine's lean decoding path (brain/engine/lean_decode.py) gives members the replies the model's own
forward pass gives, on every model layout it serves, in float32 and in bfloat16 with 4-bit weights."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from brain.engine.batching import GenerationRequest
from brain.engine.cpu_linear import int4_available
from brain.engine.lean_decode import LeanDecoder
from brain.engine.model_loading import LoadedModel, load_serving_model
from tests.brain.engine.helpers import collect, random_prompts, reference_greedy, worker_paused
from tests.support.tiny_model import make_tiny_model_dir


def members_prompts() -> list[list[int]]:
    """Prompts of several lengths: two share the cache's narrowest group, one alone needs a wider one."""
    prompts = random_prompts(3, seed=7, longest=40)
    prompts[2] = random_prompts(1, seed=8, longest=2)[0] * 150  # past 128 tokens: a group of its own
    return prompts


async def replies_together(engine, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    async with worker_paused(engine):  # all of them join in one step and decode side by side
        handles = [engine.submit(GenerationRequest(prompt_ids=p, max_new_tokens=max_new_tokens)) for p in prompts]
    return list(await asyncio.gather(*(collect(handle) for handle in handles)))


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
async def test_members_get_the_replies_of_model_generate_on_each_llama_layout(
    arch: str, tmp_path: Path, start_engine
) -> None:
    loaded = load_serving_model(str(make_tiny_model_dir(tmp_path / arch, arch=arch)), cache_dir=tmp_path / "cache")
    assert LeanDecoder.of(loaded.model, loaded.device) is not None, "this layout should take the lean path"
    prompts = members_prompts()
    replies = await replies_together(start_engine(loaded), prompts, 12)
    for prompt, reply in zip(prompts, replies, strict=True):
        assert reply == reference_greedy(loaded, prompt, 12)


@pytest.mark.skipif(not int4_available(), reason="bfloat16 with 4-bit weights needs a CPU with bfloat16 instructions")
async def test_bfloat16_four_bit_replies_are_those_of_the_generic_forward_pass(
    tiny_model_dir: Path, tmp_path: Path, start_engine
) -> None:
    loaded = load_serving_model(str(tiny_model_dir), cache_dir=tmp_path, cpu_weights="int4")
    assert loaded.dtype == torch.bfloat16
    decoder = LeanDecoder.of(loaded.model, loaded.device)
    assert decoder is not None
    assert getattr(decoder.layers[0].qkv, "few_rows", None) == "int4", "the fused product keeps 4-bit weights"
    prompts = members_prompts()
    generic = start_engine(loaded)
    generic.runner.lean = False
    expected = await replies_together(generic, prompts, 16)
    assert await replies_together(start_engine(loaded), prompts, 16) == expected
    for prompt, reply in zip(prompts, expected, strict=True):  # and one member alone: its single-row group
        alone = start_engine(loaded).submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=16))
        assert await collect(alone) == reply


async def test_changed_weights_are_what_the_next_replies_use(
    tiny_model_dir: Path, tmp_path: Path, start_engine
) -> None:
    loaded: LoadedModel = load_serving_model(str(tiny_model_dir), cache_dir=tmp_path)
    engine = start_engine(loaded)
    prompt = members_prompts()[0]
    before = await collect(engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=12)))

    def scale_weights() -> None:  # a fused product's part and a layer outside any fusion, changed in place
        with torch.no_grad():
            for layer in loaded.model.model.layers:
                layer.self_attn.k_proj.weight.mul_(-1.5)
                layer.mlp.down_proj.weight.mul_(0.5)

    await engine.between_steps(scale_weights)
    scaled = await collect(engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=12)))
    assert scaled == reference_greedy(loaded, prompt, 12)
    assert scaled != before, "the change should show in the reply"

    def replace_weights() -> None:  # new tensors in place of old ones: a fused part and a norm
        for layer in loaded.model.model.layers:
            for module in (layer.mlp.up_proj, layer.input_layernorm):
                module.weight = torch.nn.Parameter(module.weight.detach() * -2.0)

    await engine.between_steps(replace_weights)
    replaced = await collect(engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=12)))
    assert replaced == reference_greedy(loaded, prompt, 12)
    assert replaced != scaled, "the change should show in the reply"
