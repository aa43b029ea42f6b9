"""A tiny randomly initialised chat model on disk, loadable like any local model directory.

Its byte-level BPE tokenizer is trained in a few milliseconds on the short text below and knows the
ChatML tokens, so prompts go through the same chat template code as the real default model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TRAINING_TEXT = """\
The weather was cold in the morning, so the children wore their warm coats to school.
A good friend listens when you talk and helps when you need a hand.
What is the capital of France? The capital of France is Paris, a city on the river Seine.
The cat sat on the mat and watched the birds in the garden.
Please tell me a short story about a dragon who learned to bake bread.
Water boils at one hundred degrees Celsius at sea level.
How are you today? I am fine, thank you, and how are you?
Music, books and long walks make a quiet evening pleasant.
The train leaves the station at seven and arrives in the city before nine.
Numbers like 1, 2, 3 and 42 appear in stories, recipes and letters. Café, naïve, jalapeño, 東京.
"""


def train_tokenizer() -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TRAINING_TEXT.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<|pad|>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def make_tiny_model_dir(path: Path, *, seed: int = 0, arch: str = "llama") -> Path:
    """Write a 2-layer, 64-wide random ``llama``, ``mistral``, ``qwen2`` or ``gpt2`` model and its tokenizer to
    ``path``."""
    tokenizer = train_tokenizer()
    special = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        # wider than the usual 0.02 so that random logits have clear winners and greedy picks are stable
        "initializer_range": 0.2,
    }
    torch.manual_seed(seed)
    # Llama's layout, and two of its kin with other details (qwen2: biased q, k, v)
    llama_like = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }
    if arch in llama_like:
        config_class, model_class = llama_like[arch]
        config = config_class(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            **special,
        )
        model = model_class(config)
    elif arch == "gpt2":
        config = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=512, **special)
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown tiny model architecture {arch!r}; choose 'llama', 'mistral', 'qwen2' or 'gpt2'")
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
