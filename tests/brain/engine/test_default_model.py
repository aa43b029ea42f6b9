from __future__ import annotations

from pathlib import Path

import pytest

from brain.engine.batching import GenerationRequest
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS, load_serving_model, resolve_model
from brain.engine.text import TextStream

pytestmark = pytest.mark.integration


async def test_default_alias_converts_once_and_answers(tmp_path: Path, start_engine) -> None:
    converted = resolve_model(DEFAULT_MODEL_ALIAS, tmp_path)
    assert converted == tmp_path / DEFAULT_MODEL_ALIAS
    weights = (converted / "model.safetensors").stat()
    assert [path.name for path in tmp_path.iterdir()] == [DEFAULT_MODEL_ALIAS], "no temporary directory left"

    loaded = load_serving_model(DEFAULT_MODEL_ALIAS, cache_dir=tmp_path)
    assert Path(loaded.model.config._name_or_path) == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == weights.st_mtime_ns, "converted again"

    tokenizer = loaded.tokenizer
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    engine = start_engine(loaded)
    handle = engine.submit(GenerationRequest(prompt_ids=tokenizer.encode(prompt), max_new_tokens=40))
    stream = TextStream(handle, tokenizer)
    answer = await stream.complete()
    assert "Paris" in answer
    assert stream.finish_reason == "stop"

    # as the service loads it: bf16, and 4-bit copies for few rows, where the CPU has bf16 instructions
    served = load_serving_model(DEFAULT_MODEL_ALIAS, cache_dir=tmp_path, cpu_weights="auto")
    handle = start_engine(served).submit(GenerationRequest(prompt_ids=tokenizer.encode(prompt), max_new_tokens=40))
    assert "Paris" in await TextStream(handle, tokenizer).complete()
