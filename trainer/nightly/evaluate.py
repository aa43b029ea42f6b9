"""How good an adapter is, measured the same way for the base model, the live adapter and the candidate.

- perplexity on the target's test split (the tokens the loss is taken on, as in training);
- perplexity on the fixed general set (chatterbot-corpus categories never trained on): the forgetting guard;
- BLEU and chrF (sacrebleu) of greedy replies against the held-out replies, on a sample of test turns.
The base model is loaded once; adapters are attached with peft for their measurement and removed after.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import sacrebleu
import torch

from brain.engine.model_loading import eos_token_ids
from trainer import runtime as rt
from trainer.nightly.data import Example, PromptSample, chunks, collate, token_losses


@dataclass
class Scores:
    name: str
    test_ppl: float
    general_ppl: float
    bleu: float
    chrf: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalSet:
    test: list[Example]
    general: list[Example]
    prompts: list[PromptSample]


class Evaluator:
    def __init__(self, model_path: str, *, batch_size: int = 8, max_batch_tokens: int = 2048, max_new_tokens: int = 32):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = rt.pick_device("auto")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.base = AutoModelForCausalLM.from_pretrained(model_path, dtype=rt.pick_dtype(self.device))
        self.base.to(self.device).eval()
        self.peft: Any = None
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_new_tokens = max_new_tokens
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos = sorted(eos_token_ids(self.base, self.tokenizer))
        self._general_cache: dict[str | None, float] = {}
        self._count = 0

    def score(self, name: str, adapter_dir: str | None, data: EvalSet) -> Scores:
        model = self._attach(adapter_dir)
        try:
            if adapter_dir not in self._general_cache:
                self._general_cache[adapter_dir] = self.perplexity(model, data.general)
            test_ppl = self.perplexity(model, data.test)
            replies = self.generate(model, data.prompts)
        finally:
            self._detach()
        references = [sample.reference for sample in data.prompts]
        bleu = sacrebleu.corpus_bleu(replies, [references]).score if replies else float("nan")
        chrf = sacrebleu.corpus_chrf(replies, [references]).score if replies else float("nan")
        return Scores(name, test_ppl, self._general_cache[adapter_dir], bleu, chrf)

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

    @torch.no_grad()
    def perplexity(self, model: Any, examples: list[Example]) -> float:
        examples = sorted(examples, key=lambda e: len(e.ids))  # batches of similar length: less padding
        total, count = 0.0, 0
        for part in chunks(examples, self.batch_size, self.max_batch_tokens):
            batch = collate(part, self.pad)
            loss, n = token_losses(model, {k: v.to(self.device) for k, v in batch.items()})
            total, count = total + loss.item(), count + int(n)
        return math.exp(total / count) if count else float("nan")

    @torch.no_grad()
    def generate(self, model: Any, prompts: list[PromptSample]) -> list[str]:
        """Greedy replies, in batches of left-padded prompts."""
        replies: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            width = max(len(p.ids) for p in chunk)
            ids = torch.full((len(chunk), width), self.pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, sample in enumerate(chunk):
                ids[row, width - len(sample.ids) :] = torch.tensor(sample.ids)
                mask[row, width - len(sample.ids) :] = 1
            out = model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                eos_token_id=self.eos,
                pad_token_id=self.pad,
            )
            replies += [self.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
        return replies
