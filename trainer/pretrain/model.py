"""The GPT: token and learned position embeddings, N pre-LayerNorm blocks of masked multi-head
self-attention and MLP with residuals and dropout, a tied output head.

It is transformers' GPT-2 built from a config rather than a model class of our own, so a saved
directory is plain Hugging Face format that the brain, peft and anyone's transformers load as is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from trainer.errors import ConfigError


@dataclass(frozen=True)
class GPTShape:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if min(self.n_layer, self.n_head, self.n_embd, self.block_size) < 1:
            raise ConfigError(f"layers, heads, width and context must be positive: {asdict(self)}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"the width {self.n_embd} must be a multiple of the number of heads {self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout {self.dropout} must be in [0, 1)")


def gpt_config(shape: GPTShape, tokenizer: PreTrainedTokenizerFast) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=shape.block_size,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        activation_function="gelu_new",
        resid_pdrop=shape.dropout,
        embd_pdrop=shape.dropout,
        attn_pdrop=shape.dropout,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_gpt(shape: GPTShape, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """Random weights, GPT-2 initialisation (N(0, 0.02), residual projections scaled by 1/sqrt(2N))."""
    return GPT2LMHeadModel(gpt_config(shape, tokenizer))


def generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    # a reply ends at <|im_end|>; a document at <|endoftext|>
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=sorted(set(stops)),
        pad_token_id=tokenizer.pad_token_id,
    )


def count_parameters(model: GPT2LMHeadModel, non_embedding: bool = True) -> int:
    n = sum(p.numel() for p in model.parameters())
    if non_embedding:
        n -= model.transformer.wpe.weight.numel()
    return n


def flops_per_token(model: GPT2LMHeadModel) -> float:
    """Training FLOPs per token, as in the PaLM appendix: 6N for the weights plus attention's share."""
    c = model.config
    return 6 * count_parameters(model) + 12 * c.n_layer * c.n_embd * c.n_positions


# Dense bf16 peak FLOP/s of common training GPUs, for model FLOPs utilisation.
GPU_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def gpu_peak_flops(device_name: str) -> float | None:
    for key, value in GPU_PEAK_FLOPS.items():
        if key in device_name.upper():
            return value
    return None
