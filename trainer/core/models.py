"""The trainer's one model loader: any causal LM -- a run directory, a LoRA adapter directory or a Hugging
Face id -- with clear errors for a path that is missing or a directory that is damaged; and LoRA adapters
put on a model for training, with the modules they adapt decided here once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from brain.engine.model_loading import pick_device
from trainer.errors import CheckpointError
from trainer.settings import FinetuneSettings

if TYPE_CHECKING:  # transformers' model classes cost seconds to import: a pretraining run needs none of them
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# a loading bar per model is noise in a command's output
hf_logging.disable_progress_bar()


Method = Literal["lora", "full"]


@dataclass
class ModelWithTokenizer:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the model's position embeddings allow (None: no fixed limit)."""
        config = self.model.config
        return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def pick_dtype(device: torch.device, cpu_bf16: bool = False) -> torch.dtype:
    """Weights for inference and fine-tuning: bf16 on a GPU that has it, and on a CPU where ``cpu_bf16`` asks for it
    (see trainer.nightly.run.cpu_bf16); else fp32."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and cpu_bf16 else torch.float32


def training_dtype(method: Method, device: torch.device) -> torch.dtype:
    """A full fine-tune keeps fp32 master weights (under autocast); LoRA trains fp32 adapters on a bf16 base."""
    return torch.float32 if method == "full" else pick_dtype(device)


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists() or name.count("/") > 1


def resolve_name(name: str) -> str:
    """A local directory for the names the brain knows (the offline default's alias among them, which
    the brain converts once from its GGUF file); other names are left to transformers."""
    if looks_like_path(name):
        return name
    try:
        from brain.engine.model_loading import ModelNotFoundError, resolve_model
        from brain.settings import Settings
    except ImportError:  # a trainer installed without the brain
        return name
    try:
        return str(resolve_model(name, Path(Settings().model.cache_dir).expanduser()))
    except ModelNotFoundError as e:
        raise CheckpointError(f"model not found: {e}") from None


def load_model(
    name: str, device: str = "auto", dtype: torch.dtype | None = None, *, cpu_bf16: bool = False
) -> ModelWithTokenizer:
    """A model and its tokenizer, in eval mode, on the chosen device (without ``dtype``: pick_dtype's, bf16 on a GPU,
    fp32 on a CPU unless ``cpu_bf16``)."""
    target = pick_device(device)
    dtype = dtype or pick_dtype(target, cpu_bf16)
    source = resolve_name(name)
    path = Path(source).expanduser()
    if looks_like_path(source):
        if not path.exists():
            raise CheckpointError(f"model not found: {path} does not exist")
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise CheckpointError(f"{path} is not a model directory: it has no config.json")
    try:
        if (path / "adapter_config.json").is_file():
            model, tokenizer = _load_adapter(path, dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(source)
    except CheckpointError:
        raise
    except Exception as e:  # a damaged file surfaces as one of many library errors
        raise CheckpointError(f"the model {name} does not load: {e}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(target).eval()
    return ModelWithTokenizer(model=model, tokenizer=tokenizer, name=name, device=target)


def _load_adapter(path: Path, dtype: torch.dtype):
    from peft import PeftModel

    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise CheckpointError(f"the adapter {path} does not name its base model (base_model_name_or_path)")
    base = resolve_name(base)
    base_model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    model = PeftModel.from_pretrained(base_model, path)
    has_tokenizer = (path / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(path if has_tokenizer else base)
    return model, tokenizer


def add_lora(model: PreTrainedModel, settings: FinetuneSettings) -> Any:
    """``model`` with a fresh LoRA adapter (from the seeded RNG) on the modules ``settings.target_modules``
    names; none named means peft's choice for the architecture (q_proj and v_proj for Llama, c_attn for
    GPT-2), and the one name "all-linear" every linear layer but the output head."""
    from peft import LoraConfig, get_peft_model

    modules = settings.target_modules
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules="all-linear" if modules == ["all-linear"] else modules or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
