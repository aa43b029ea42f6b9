"""Text from a model: greedy decoding, sampling (temperature, top-k, top-p) with a seed, beam search.

All of it is `model.generate` with the arguments SamplingOptions (trainer/core/config.py) maps a strategy
to; this module formats chat prompts with the tokenizer's template and keeps prompt plus reply inside the
model's context.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from transformers import set_seed

from trainer.core.config import SamplingOptions
from trainer.core.models import ModelWithTokenizer
from trainer.errors import ConfigError


def prompt_ids(loaded: ModelWithTokenizer, prompt: str, chat: bool) -> list[int]:
    """The prompt as ids: the chat template around it for chat, else the bare text after a BOS."""
    tok = loaded.tokenizer
    if chat:
        messages = [{"role": "user", "content": prompt}]
        ids = tok(
            tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
            verbose=False,
        )["input_ids"]
    else:
        ids = tok(prompt, add_special_tokens=False, verbose=False)["input_ids"]
        if tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
            ids = [tok.bos_token_id] + ids
    return ids


def generate(loaded: ModelWithTokenizer, prompt: str, options: SamplingOptions, chat: bool = False) -> list[str]:
    """Continuations of `prompt` (replies, with chat=True), without the prompt itself."""
    return generate_from_ids(loaded, prompt_ids(loaded, prompt, chat), options)


@torch.no_grad()
def generate_from_ids(loaded: ModelWithTokenizer, ids: list[int], options: SamplingOptions) -> list[str]:
    """Continuations of the prompt `ids`. Text longer than the model's context is written in rounds,
    each starting from the last half-context of what came before (as nanoGPT's sampler crops it)."""
    kwargs = options.generate_kwargs()
    limit = loaded.max_positions
    if options.seed is not None:
        set_seed(options.seed)
    max_new = options.max_new_tokens
    if limit is None or len(ids) + max_new <= limit:
        new = _generate(loaded, ids, max_new, kwargs)
    elif max_new <= limit // 2 or (options.strategy == "beam" and max_new < limit):
        new = _generate(loaded, ids[-(limit - max_new) :], max_new, kwargs)  # keep the prompt's end
    elif options.strategy == "beam":
        raise ConfigError(
            f"beam search needs prompt and reply inside the model's context of {limit} tokens; "
            f"ask for fewer than {limit} new tokens"
        )
    else:
        one = {**kwargs, "num_return_sequences": 1}
        new = [_generate_rolling(loaded, ids, max_new, one, limit) for _ in range(options.num_return_sequences)]
    return [str(loaded.tokenizer.decode(seq, skip_special_tokens=True)) for seq in new]


def _generate(loaded: ModelWithTokenizer, ids: list[int], max_new_tokens: int, kwargs: dict) -> list[list[int]]:
    input_ids = torch.tensor([ids], device=loaded.device)
    out = cast(Any, loaded.model).generate(  # transformers' generate is typed through a decorator mypy misreads
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        pad_token_id=loaded.tokenizer.pad_token_id,
        **kwargs,
    )
    stops = _stop_ids(loaded)
    result = []
    for seq in out[:, len(ids) :].tolist():
        end = next((i + 1 for i, t in enumerate(seq) if t in stops), len(seq))
        result.append(seq[:end])  # what follows a stop token is padding
    return result


def _generate_rolling(
    loaded: ModelWithTokenizer, ids: list[int], max_new_tokens: int, kwargs: dict, limit: int
) -> list[int]:
    out: list[int] = []
    context = ids[-(limit // 2) :]
    while len(out) < max_new_tokens:
        n = min(max_new_tokens - len(out), limit - len(context))
        new = _generate(loaded, context, n, kwargs)[0]
        out += new
        if len(new) < n or (new and new[-1] in _stop_ids(loaded)):
            break
        context = (context + new)[-(limit // 2) :]
    return out


def _stop_ids(loaded: ModelWithTokenizer) -> set[int]:
    eos = loaded.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return ids
