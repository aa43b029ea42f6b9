"""The GPT, from its parts, in the order a forward pass uses them.

    token ids ─▶ token embedding + position embedding ─▶ dropout
              ─▶ N blocks, each:  x + attention(layer norm(x)),  then  x + MLP(layer norm(x))
              ─▶ final layer norm ─▶ output head (the token embedding, transposed: tied) ─▶ logits

Attention is masked multi-head causal self-attention: one linear layer makes queries, keys and values
for every head at once, each position attends to itself and the positions before it
(``scaled_dot_product_attention`` with ``is_causal``), and a linear layer mixes the heads' outputs.
The MLP widens to 4x, applies GELU (the tanh approximation, as GPT-2 does) and narrows back.

The parameters are named and shaped as in Hugging Face's ``GPT2LMHeadModel``, with one difference:
GPT-2's ``Conv1D`` stores a matrix as (in, out) where ``nn.Linear`` stores (out, in), so the four
matrices of each block are transposed on the way out (``hf_state_dict``) and back in (``from_hf``).
A saved run is therefore a plain GPT-2 directory that the brain, peft and anyone's transformers load
as is, and a GPT-2 directory loads back into this class to resume training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import GenerationConfig, GPT2Config, PreTrainedTokenizerBase

from trainer.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # transformers' model classes cost seconds to import: training needs none of them
    from transformers import GPT2LMHeadModel

LAYER_NORM_EPS = 1e-5  # GPT-2's
# GPT-2's Conv1D matrices, stored (in, out): transposed against nn.Linear's (out, in)
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


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


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.n_head = shape.n_head
        self.dropout = shape.dropout
        self.c_attn = nn.Linear(shape.n_embd, 3 * shape.n_embd)  # queries, keys and values of all heads
        self.c_proj = nn.Linear(shape.n_embd, shape.n_embd)
        self.resid_dropout = nn.Dropout(shape.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape  # batch, positions, width (n_embd)
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        # each head attends on its own slice of the width: (B, T, C) -> (B, T, heads, hs) -> (B, heads, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        # (B, heads, T, hs) -> (B, T, heads, hs) -> (B, T, C): the heads side by side again
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.c_fc = nn.Linear(shape.n_embd, 4 * shape.n_embd)
        self.c_proj = nn.Linear(4 * shape.n_embd, shape.n_embd)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, C) -> (B, T, 4C) -> (B, T, C)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-norm: each sublayer reads a normalised copy and adds its output to the residual stream."""

    def __init__(self, shape: GPTShape):
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.n_embd, eps=LAYER_NORM_EPS)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.LayerNorm(shape.n_embd, eps=LAYER_NORM_EPS)
        self.mlp = MLP(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """All but the output head: embeddings in, the final layer norm's output out."""

    def __init__(self, shape: GPTShape, vocab_size: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, shape.n_embd)  # a vector per token
        self.wpe = nn.Embedding(shape.block_size, shape.n_embd)  # a vector per position, learned
        self.drop = nn.Dropout(shape.dropout)
        self.h = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_f = nn.LayerNorm(shape.n_embd, eps=LAYER_NORM_EPS)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)  # (T,)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))  # (B, T, C) + (T, C), broadcast: (B, T, C)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPTOutput(NamedTuple):
    logits: torch.Tensor  # (batch, positions, vocabulary)


class GPT(nn.Module):
    def __init__(self, shape: GPTShape, vocab_size: int):
        super().__init__()
        if vocab_size < 1:
            raise ConfigError(f"the vocabulary must hold at least one token, not {vocab_size}")
        self.shape = shape
        self.vocab_size = vocab_size
        self.transformer = Transformer(shape, vocab_size)
        self.lm_head = nn.Linear(shape.n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: reading a token and writing it share a vector
        self.apply(self._init_weights)
        # GPT-2: each residual projection adds to the stream once per layer and sublayer, so start them small
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * shape.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
    ) -> GPTOutput:
        """Logits of the next token at every position, at the last ``logits_to_keep`` (0: every one) or, given
        a boolean (batch, positions) mask, at its positions, as one (kept, vocabulary) matrix. ``attention_mask``,
        ``use_cache`` and ``logits_to_keep`` are there for callers that speak to Hugging Face models:
        pretraining's windows are never padded, and training keeps no cache, so a mask is refused rather than
        silently ignored."""
        if attention_mask is not None:
            raise ValueError("this GPT trains on unpadded windows: pass no attention mask")
        if input_ids.size(1) > self.shape.block_size:
            raise ValueError(f"{input_ids.size(1)} positions do not fit the context of {self.shape.block_size}")
        states = self.transformer(input_ids)  # (B, T) -> (B, T, C)
        if isinstance(logits_to_keep, torch.Tensor):
            return GPTOutput(logits=self.lm_head(states[logits_to_keep]))  # -> (kept, vocab)
        return GPTOutput(logits=self.lm_head(states[:, -logits_to_keep:]))  # -> (B, kept, vocab)

    # -- Hugging Face GPT-2, out and in

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under GPT-2's names and layouts (copies: training may go on). The head is left out,
        as GPT-2 saves it: it is the token embedding, tied again on load."""
        state = {name: value.detach().clone() for name, value in self.state_dict().items()}
        del state["lm_head.weight"]
        for name in state:
            if name.endswith(CONV1D_WEIGHTS):
                state[name] = state[name].t().contiguous()  # nn.Linear's (out, in) -> Conv1D's (in, out)
        return state

    def hf_config(self, tokenizer: PreTrainedTokenizerBase) -> GPT2Config:
        config = gpt_config(self.shape, tokenizer)
        config.architectures = ["GPT2LMHeadModel"]
        config.dtype = self.lm_head.weight.dtype
        return config

    def to_hf(self, tokenizer: PreTrainedTokenizerBase) -> GPT2LMHeadModel:
        """A ``GPT2LMHeadModel`` holding these weights."""
        from transformers import GPT2LMHeadModel

        with torch.device("meta"):  # no time spent initialising weights that are replaced at once
            hf = GPT2LMHeadModel(self.hf_config(tokenizer))
        missing, unexpected = hf.load_state_dict(self.hf_state_dict(), strict=False, assign=True)
        if missing != ["lm_head.weight"] or unexpected:
            raise AssertionError(f"GPT-2 names its weights otherwise: missing {missing}, unexpected {unexpected}")
        hf.lm_head.weight = hf.transformer.wte.weight
        return hf.eval()

    def save_hf(self, directory: Path, tokenizer: PreTrainedTokenizerBase) -> None:
        """config.json and model.safetensors, as ``GPT2LMHeadModel.save_pretrained`` writes them, without
        building one (a tenth of a second each time a checkpoint is kept)."""
        self.hf_config(tokenizer).save_pretrained(directory)
        save_file(self.hf_state_dict(), Path(directory) / "model.safetensors", metadata={"format": "pt"})

    @classmethod
    def from_hf(cls, hf: GPT2LMHeadModel) -> GPT:
        """This class with the weights of a GPT-2 model: ours, or any that this class can express."""
        c = hf.config
        dropouts = {c.resid_pdrop, c.embd_pdrop, c.attn_pdrop}
        if (
            c.activation_function not in ("gelu_new", "gelu_pytorch_tanh")
            or c.n_inner not in (None, 4 * c.n_embd)
            or len(dropouts) != 1
            or not c.scale_attn_weights
            or c.scale_attn_by_inverse_layer_idx
            or c.layer_norm_epsilon != LAYER_NORM_EPS
            or not c.tie_word_embeddings
        ):
            raise CheckpointError(
                "this GPT-2 model has a variant this trainer does not build (activation, MLP width, "
                "dropouts, attention scaling, layer norm epsilon or an untied head)"
            )
        shape = GPTShape(c.n_layer, c.n_head, c.n_embd, c.n_positions, dropouts.pop())
        model = cls(shape, c.vocab_size)
        state = {
            name: value.detach()
            for name, value in hf.state_dict().items()
            if not name.endswith((".attn.bias", ".attn.masked_bias"))  # older transformers' causal masks
        }
        for name in state:
            if name.endswith(CONV1D_WEIGHTS):
                state[name] = state[name].t()  # Conv1D's (in, out) -> nn.Linear's (out, in)
        state["lm_head.weight"] = state["transformer.wte.weight"]
        model.load_state_dict(state)
        return model


def gpt_config(shape: GPTShape, tokenizer: PreTrainedTokenizerBase) -> GPT2Config:
    """The Hugging Face config that describes this GPT."""
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
        layer_norm_epsilon=LAYER_NORM_EPS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_gpt(shape: GPTShape, tokenizer: PreTrainedTokenizerBase) -> GPT:
    """Random weights, GPT-2 initialisation (N(0, 0.02), residual projections scaled by 1/sqrt(2N))."""
    return GPT(shape, len(tokenizer))


def generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    # a reply ends at <|im_end|>; a document at <|endoftext|>
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=sorted(set(stops)),
        pad_token_id=tokenizer.pad_token_id,
    )


def count_parameters(model: GPT, non_embedding: bool = True) -> int:
    n = sum(p.numel() for p in model.parameters())  # the tied head is counted once
    if non_embedding:
        n -= model.transformer.wpe.weight.numel()
    return n


def flops_per_token(model: GPT) -> float:
    """Training FLOPs per token, as in the PaLM appendix: 6N for the weights plus attention's share."""
    s = model.shape
    return 6 * count_parameters(model) + 12 * s.n_layer * s.n_embd * s.block_size


# Dense bf16 peak FLOP/s of common training GPUs, for model FLOPs utilisation.
GPU_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def gpu_peak_flops(device_name: str) -> float | None:
    for key, value in GPU_PEAK_FLOPS.items():
        if key in device_name.upper():
            return value
    return None
