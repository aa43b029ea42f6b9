"""How good an adapter is, measured the same way for the base model, the live adapter and the candidate.

- perplexity on the target's test split (the tokens the loss is taken on, as in training);
- perplexity on the fixed general set (chatterbot-corpus categories never trained on): the forgetting guard;
- BLEU and chrF (sacrebleu) of greedy replies against the held-out replies, on a sample of test turns.
The base model is loaded once; adapters are attached with peft for their measurement and removed after.
The measures themselves are the core's (trainer/core/evaluation.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from brain.engine.model_loading import eos_token_ids
from trainer.core.batches import by_length
from trainer.core.evaluation import bleu_chrf, greedy_replies, mean_loss
from trainer.core.examples import Example
from trainer.core.models import load_model
from trainer.core.objectives import NextToken
from trainer.nightly.conversations import PromptSample


class Scores(BaseModel):
    name: str
    test_ppl: float
    general_ppl: float
    bleu: float
    chrf: float


@dataclass
class EvalSet:
    test: list[Example]
    general: list[Example]
    prompts: list[PromptSample]


class Evaluator:
    def __init__(self, model_path: str, *, batch_size: int = 8, max_batch_tokens: int = 2048, max_new_tokens: int = 32):
        loaded = load_model(model_path)
        self.device = loaded.device
        self.tokenizer = loaded.tokenizer
        self.base = loaded.model
        self.peft: Any = None
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_new_tokens = max_new_tokens
        self.pad = self.tokenizer.pad_token_id
        self.eos = sorted(eos_token_ids(self.base, self.tokenizer))
        self._general_cache: dict[str | None, float] = {}
        self._count = 0

    def score(self, name: str, adapter_dir: str | None, data: EvalSet) -> Scores:
        model = self._attach(adapter_dir)
        try:
            if adapter_dir not in self._general_cache:
                self._general_cache[adapter_dir] = self.perplexity(model, data.general)
            test_ppl = self.perplexity(model, data.test)
            replies = greedy_replies(
                model,
                self.tokenizer,
                [sample.ids for sample in data.prompts],
                batch_size=self.batch_size,
                max_new_tokens=self.max_new_tokens,
                eos_token_ids=self.eos,
                pad_id=self.pad,
                device=self.device,
            )
        finally:
            self._detach()
        bleu, chrf = bleu_chrf(replies, [sample.reference for sample in data.prompts])
        return Scores(name=name, test_ppl=test_ppl, general_ppl=self._general_cache[adapter_dir], bleu=bleu, chrf=chrf)

    def perplexity(self, model: Any, examples: list[Example]) -> float:
        batches = by_length(examples, self.batch_size, self.max_batch_tokens, self.pad)
        return math.exp(mean_loss(model, batches, NextToken(), self.device))

    def _attach(self, adapter_dir: str | None) -> Any:
        if adapter_dir is None:
            return self.base  # with every adapter removed, its LoRA layers add nothing
        from peft import PeftModel

        self._count += 1
        name = f"eval{self._count}"
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self.base, adapter_dir, adapter_name=name)
        else:
            self.peft.load_adapter(adapter_dir, adapter_name=name)
        self.peft.set_adapter(name)
        self.peft.eval()
        return self.peft

    def _detach(self) -> None:
        """Remove every adapter: what is left computes exactly what the base model does."""
        if self.peft is not None:
            for name in list(self.peft.peft_config):
                self.peft.delete_adapter(name)
