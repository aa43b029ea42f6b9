"""Tokenizers trained from the data: character level or byte-level BPE, saved as a Hugging Face
PreTrainedTokenizerFast with ChatML special tokens and chat template, so the brain can chat with it."""

from __future__ import annotations

from typing import Literal

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from trainer.errors import VocabularyTooSmallError

TokenizerKind = Literal["char", "bpe"]

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
UNK = "<|unk|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]
BYTE_ALPHABET = 256

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def special_tokens(kind: TokenizerKind) -> list[str]:
    # byte-level BPE can spell any text; characters need an unknown token for unseen ones
    return SPECIAL_TOKENS + ([UNK] if kind == "char" else [])


def check_vocab_size(kind: TokenizerKind, vocab_size: int | None, text: str) -> None:
    """Refuse a vocabulary that cannot hold what the data needs, before any training."""
    if vocab_size is None:
        if kind == "bpe":
            raise VocabularyTooSmallError("a BPE tokenizer needs a vocabulary size (--vocab-size)")
        return
    specials = len(special_tokens(kind))
    needed = len(set(text)) + specials if kind == "char" else BYTE_ALPHABET + specials
    if vocab_size < needed:
        what = f"{needed - specials} distinct characters" if kind == "char" else f"{BYTE_ALPHABET} byte symbols"
        raise VocabularyTooSmallError(
            f"the vocabulary size {vocab_size} is too small for the data: a {kind} tokenizer needs {what} "
            f"plus {specials} special tokens; use --vocab-size {needed} or more"
        )


def train_tokenizer(kind: TokenizerKind, text: str, vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    check_vocab_size(kind, vocab_size, text)
    core = _train_char(text) if kind == "char" else _train_bpe(text, vocab_size or 0)
    return wrap(core, kind)


def _train_char(text: str) -> Tokenizer:
    # a BPE model without merges is a character tokenizer that the tokenizers library saves and loads
    vocab = {token: i for i, token in enumerate(special_tokens("char"))}
    for ch in sorted(set(text) - set(vocab)):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.decoder = decoders.Fuse()
    return core


def _train_bpe(text: str, vocab_size: int) -> Tokenizer:
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens("bpe"),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = text.splitlines(keepends=True)
    core.train_from_iterator((lines[i : i + 1000] for i in range(0, len(lines), 1000)), trainer=trainer)
    return core


def wrap(core: Tokenizer, kind: TokenizerKind) -> PreTrainedTokenizerFast:
    core.add_special_tokens(special_tokens(kind))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=ENDOFTEXT,
        eos_token=IM_END,
        # padding is masked out anyway; a pad id unlike the BOS that starts every prompt keeps
        # transformers from warning that a prompt "may be padded"
        pad_token=IM_END,
        unk_token=UNK if kind == "char" else None,
        additional_special_tokens=[IM_START],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def describe(tokenizer: PreTrainedTokenizerFast, kind: TokenizerKind) -> dict:
    return {
        "kind": kind,
        "vocab_size": len(tokenizer),
        "special_tokens": {t: tokenizer.convert_tokens_to_ids(t) for t in special_tokens(kind)},
    }
