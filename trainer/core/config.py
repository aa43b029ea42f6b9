"""What each trainer command is asked to do, as pydantic models: one idiom, whose fields the command line
takes its defaults (and most of its help) from.

A fine-tune is configured by trainer/settings.py's FinetuneSettings -- the nightly run's settings -- extended
by what a one-off `trainer finetune` names besides (a model, a data file, an output directory). A bad value
is refused when the model is built, with a ConfigError that names the field.

Torch-free on purpose: the command line imports this module to build its options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainer.errors import ConfigError
from trainer.settings import FinetuneSettings

# a whole model moves further per step than an adapter does: its default rate is a quarter of LoRA's
FULL_FINETUNE_LEARNING_RATE = 5e-5


class Checked:
    """Mixed into a pydantic model: a refused value raises ConfigError, whose message names each field and
    its problem, so that the command line prints it as the user's mistake rather than as a traceback."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError("; ".join(_problem(e) for e in error.errors())) from None


def _problem(error: Any) -> str:
    cause = (error.get("ctx") or {}).get("error")
    message = str(cause) if isinstance(cause, Exception) else error["msg"]
    field = ".".join(str(part) for part in error["loc"])
    return f"{field}: {message}" if field else message


def parse_fractions(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """'0.9,0.05,0.05' or (0.9, 0.1) -> (train, val, test); they must add up to 1."""
    parts = [float(x) for x in spec.split(",")] if isinstance(spec, str) else [float(x) for x in spec]
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions {spec!r} must be 2 or 3 non-negative numbers adding up to 1")
    if parts[0] <= 0 or parts[1] <= 0:
        raise ConfigError(f"split fractions {spec!r} need a train and a validation part")
    return parts[0], parts[1], parts[2]


class PretrainConfig(Checked, BaseModel):
    """`trainer pretrain`: a tokenizer and a GPT trained from random weights on a text."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="A text file, or a directory of .txt/.md files.")
    out_dir: str = Field("runs/gpt", description="Run directory.")
    tokenizer: Literal["char", "bpe"] = Field("char", description="char, or bpe (byte-level BPE, needs --vocab-size).")
    vocab_size: int | None = Field(None, ge=1, description="Vocabulary size (BPE), or an upper bound (char).")
    split: tuple[float, float, float] = Field((0.9, 0.05, 0.05), description="Train, validation and test fractions.")
    n_layer: int = Field(4, description="Transformer blocks.")
    n_head: int = Field(4, description="Attention heads per block.")
    n_embd: int = Field(128, description="Embedding width.")
    block_size: int = Field(64, description="Context length in tokens.")
    dropout: float = Field(0.0, description="Dropout on embeddings, attention and residuals.")
    batch_size: int = Field(12, ge=1, description="Sequences per micro-batch (per process).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_steps: int = Field(2000, ge=1, description="Optimizer steps.")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="The cosine decays to lr times this.")
    warmup_steps: int = Field(100, ge=0, description="Warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW's weight decay (matrices only).")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.99, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this (0: off).")
    eval_every: int = Field(250, ge=1, description="Evaluate and checkpoint every this many steps.")
    eval_batches: int = Field(50, ge=1, description="Validation batches per evaluation.")
    seed: int = 1337
    compile: bool = Field(False, description="torch.compile the model.")
    device: str = Field("auto", description="auto, cpu or cuda.")

    @field_validator("split", mode="before")
    @classmethod
    def _fractions(cls, value: Any) -> tuple[float, float, float]:
        return parse_fractions(value)

    @model_validator(mode="after")
    def _shape_fits(self) -> PretrainConfig:
        self.shape  # noqa: B018 -- GPTShape checks the model's dimensions
        return self

    @property
    def shape(self) -> Any:
        from trainer.pretrain.model import GPTShape  # transformers: loaded when a run starts, not for --help

        return GPTShape(self.n_layer, self.n_head, self.n_embd, self.block_size, self.dropout)


class FinetuneConfig(Checked, FinetuneSettings):
    """`trainer finetune`: the nightly fine-tune's settings, applied to any model and a data file."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A model directory or Hugging Face id.")
    data: str = Field(description="Plain text, or chat JSONL ({'messages': [...]} per line).")
    out_dir: str = Field("runs/finetune", description="Where the adapter or model goes.")
    method: Literal["lora", "full"] = Field("lora", description="lora or full.")
    grad_accum: int = Field(1, ge=1, description="Batches of --batch-size per optimizer step.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="The share of examples held out (the last ones).")
    device: str = Field("auto", description="auto, cpu or cuda.")
    # a fine-tune on its own hands back the model it started from when no step beats it
    keep_start: bool = Field(True, description="Keep the starting weights when no trained step beats them.")

    @model_validator(mode="after")
    def _full_finetune_rate(self) -> FinetuneConfig:
        if self.method == "full" and "learning_rate" not in self.model_fields_set:
            self.learning_rate = FULL_FINETUNE_LEARNING_RATE
        return self


class SamplingOptions(Checked, BaseModel):
    """`trainer sample`: how to continue a prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["greedy", "sample", "beam"] = Field("sample", description="greedy, sample or beam.")
    max_new_tokens: int = Field(200, ge=1, description="The longest continuation, in tokens.")
    temperature: float = Field(0.8, description="Sampling temperature (above 0).")
    top_k: int | None = Field(None, ge=1, description="Sample among the k likeliest tokens only.")
    top_p: float | None = Field(None, gt=0, le=1, description="Sample among the likeliest tokens of this mass.")
    num_beams: int = Field(4, ge=1, description="Beams for beam search.")
    num_return_sequences: int = Field(1, ge=1, description="How many continuations.")
    seed: int | None = Field(None, description="Fix the seed: the same command gives the same text.")

    @model_validator(mode="after")
    def _consistent(self) -> SamplingOptions:
        if self.strategy == "sample" and self.temperature <= 0:
            raise ValueError(f"temperature must be positive, not {self.temperature}; use greedy instead")
        if self.strategy == "beam" and self.num_return_sequences > self.num_beams:
            raise ValueError("beam search needs num_beams >= 1 and no more sequences than beams")
        return self

    def generate_kwargs(self) -> dict[str, Any]:
        if self.strategy == "greedy":
            return {"do_sample": False, "num_beams": 1}
        if self.strategy == "beam":
            return {
                "do_sample": False,
                "num_beams": self.num_beams,
                "num_return_sequences": self.num_return_sequences,
                "early_stopping": True,
            }
        # 0 and 1.0 switch top-k and top-p off in transformers
        return {
            "do_sample": True,
            "temperature": self.temperature,
            "top_k": self.top_k or 0,
            "top_p": self.top_p or 1.0,
            "num_return_sequences": self.num_return_sequences,
        }


class EvalOptions(Checked, BaseModel):
    """`trainer eval`: what to score the model on, and the n-gram baseline beside it."""

    model_config = ConfigDict(extra="forbid")

    split: Literal["test", "val", "all"] = Field("test", description="test, val, or all (then name --ngram-train).")
    ngram_order: int = Field(5, ge=3, le=5, description="The n-gram baseline's order (3 to 5).")
    ngram_unit: Literal["char", "token"] = Field("char", description="char or token (the model's tokenizer).")
    ngram_train: Path | None = Field(None, description="The n-gram's training text, for --split all.")
    max_replies: int = Field(50, ge=1, description="Chat data: replies to generate and score.")
    max_new_tokens: int = Field(64, ge=1, description="Chat data: longest generated reply.")
    stride: int | None = Field(None, ge=1, description="Window stride for long text (default: the context).")

    @model_validator(mode="after")
    def _all_needs_training_text(self) -> EvalOptions:
        if self.split == "all" and self.ngram_train is None:
            raise ValueError("split 'all' scores all of the data: name the n-gram's training text (ngram_train)")
        return self
