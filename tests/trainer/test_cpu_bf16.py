"""The nightly's precision on a CPU: bfloat16 where the brain serves in it (by default, a CPU that multiplies it
natively), float32 where the brain serves in float32; a LoRA night in bfloat16 (weights bf16, adapter float32,
steps under autocast) learns as one in float32 does. bf16 runs on any CPU (emulated where the instructions are
missing), so this holds everywhere."""

from __future__ import annotations

from pathlib import Path

import torch

from brain.engine.cpu_linear import cpu_has_bf16
from brain.settings import Settings
from trainer.core import distributed
from trainer.core.examples import ChatRenderer
from trainer.core.finetuning import FinetuneData, fine_tune
from trainer.core.models import add_lora, load_model, pick_dtype
from trainer.nightly.run import cpu_bf16
from trainer.settings import FinetuneSettings

CPU = torch.device("cpu")
SETTINGS = FinetuneSettings(learning_rate=1e-2, max_steps=12, eval_every=4, batch_size=8, warmup_steps=1, epochs=100)


def test_the_nightly_runs_in_bf16_exactly_where_the_brain_serves_in_it() -> None:
    assert cpu_bf16(Settings()) == cpu_has_bf16()
    assert not cpu_bf16(Settings(model={"cpu_weights": "float32"}))
    assert cpu_bf16(Settings(model={"cpu_weights": "bfloat16"}))
    assert not cpu_bf16(Settings(model={"dtype": "float32", "cpu_weights": "bfloat16"}))
    assert (pick_dtype(CPU, True), pick_dtype(CPU, False)) == (torch.bfloat16, torch.float32)


def test_a_lora_night_in_bf16_learns_like_one_in_float32(tiny_model_dir: Path) -> None:
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        loaded = load_model(str(tiny_model_dir), device="cpu", dtype=dtype)
        model = add_lora(loaded.model, SETTINGS)
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}, "the adapter stays fp32"
        renderer = ChatRenderer(loaded.tokenizer, max_tokens=128)
        chats = [
            renderer.completion(*parts)
            for i in range(40)
            if (parts := renderer.completion_parts([{"role": "user", "content": f"what does pet {i} say?"}], "MEOW."))
        ]
        data = FinetuneData(chats[:36], chats[36:], loaded.tokenizer.pad_token_id)
        placement = distributed.start("cpu", cpu_bf16=dtype == torch.bfloat16)
        results[dtype] = fine_tune(model, data, SETTINGS, placement, label="t", progress=False)
    fp32, bf16 = results[torch.float32], results[torch.bfloat16]
    assert fp32.best_val_loss < fp32.base_val_loss / 2
    assert bf16.best_val_loss < bf16.base_val_loss / 2, "bf16 learns the reply as well"
    assert abs(bf16.base_val_loss - fp32.base_val_loss) < 0.05 * fp32.base_val_loss, "the same model, rounded"
