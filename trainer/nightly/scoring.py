"""How good an adapter is, measured the same way for the base model, the live adapter and the candidate.

- perplexity on the target's test split (the tokens the loss is taken on, as in training);
- the general guard (guard.py): perplexity on plain prose, and which of the fixed questions it answers right;
- on held-out ratings, how well its implied reward beta * (log p - log p_base) of each reply ranks the liked
  replies above the disliked ones (AUC; the base model's rewards are all 0, an AUC of 0.5), and how often it
  puts the liked one first among replies to one prompt that members rated apart (pair accuracy);
- BLEU and chrF (sacrebleu) of greedy replies against the held-out replies, on a sample of test turns.
The base model is loaded once; adapters are attached with peft for their measurement and removed after.
The measures themselves are the core's (trainer/core/evaluation.py).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from brain.engine.model_loading import eos_token_ids
from trainer.core.batches import by_length
from trainer.core.evaluation import bleu_chrf, greedy_replies, mean_loss, reply_logprobs
from trainer.core.examples import Example
from trainer.core.models import load_model
from trainer.core.objectives import NextToken
from trainer.nightly.conversations import PromptSample
from trainer.nightly.guard import Answering, GuardSet
from trainer.nightly.ratings import RatedReplies
from trainer.nightly.stats import Pair, auc, pair_accuracy


class Scores(BaseModel):
    name: str
    test_ppl: float
    general_ppl: float  # the guard's prose
    bleu: float
    chrf: float
    # the guard's questions, in order: answered right or not
    answers_right: list[bool] = Field(default_factory=list)
    # held-out rated replies, and how often a liked one's implied reward beats a disliked one's (None: not both)
    rated: int = 0
    reward_auc: float | None = None
    # each held-out reply's implied reward and whether it was liked, in the same order for every model scored:
    # what the gate's paired comparison is taken on
    rewards: list[float] = Field(default_factory=list)
    liked: list[bool] = Field(default_factory=list)
    # the liked and disliked replies to one prompt among them (positions in rewards), each pair's prompt, and how
    # often the liked one's implied reward is the higher (None: no pair). An implied reward is defined up to a
    # constant per prompt, so these pairs judge it without the prompts' constants in the way
    pairs: list[Pair] = Field(default_factory=list)
    pair_prompts: list[int] = Field(default_factory=list)
    pair_accuracy: float | None = None


@dataclass
class EvalSet:
    test: list[Example]
    guard: GuardSet
    prompts: list[PromptSample]
    heldout: RatedReplies = field(default_factory=RatedReplies)
    beta: float = 0.1
    reference: list[float] | None = None  # the base model's log-probability of each held-out reply


class Evaluator:
    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 8,
        max_batch_tokens: int = 2048,
        max_new_tokens: int = 32,
        question_max_new_tokens: int = 32,
        cpu_bf16: bool = False,
    ):
        loaded = load_model(model_path, cpu_bf16=cpu_bf16)
        self.device = loaded.device
        self.tokenizer = loaded.tokenizer
        self.base = loaded.model
        self.peft: Any = None
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_new_tokens = max_new_tokens
        self.question_max_new_tokens = question_max_new_tokens
        self.pad = self.tokenizer.pad_token_id
        self.eos = sorted(eos_token_ids(self.base, self.tokenizer))
        self._general_cache: dict[str | None, tuple[float, list[bool]]] = {}
        self._count = 0

    def score(self, name: str, adapter_dir: str | None, data: EvalSet) -> Scores:
        examples = data.heldout.replies
        if examples and data.reference is None:
            data.reference = self.logprobs(self.base, examples)
        model = self._attach(adapter_dir)
        try:
            if adapter_dir not in self._general_cache:
                self._general_cache[adapter_dir] = (
                    self.perplexity(model, data.guard.prose),
                    self.answers(model, data.guard),
                )
            logps = self.logprobs(model, examples) if examples else []
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
        general_ppl, answers = self._general_cache[adapter_dir]
        rewards = [data.beta * (policy - ref) for policy, ref in zip(logps, data.reference or [], strict=True)]
        held = data.heldout
        return Scores(
            name=name, test_ppl=test_ppl, general_ppl=general_ppl, bleu=bleu, chrf=chrf, answers_right=answers,
            rated=len(rewards), reward_auc=auc(rewards, held.liked), rewards=rewards, liked=held.liked,
            pairs=held.pairs, pair_prompts=held.pair_prompts, pair_accuracy=pair_accuracy(rewards, held.pairs),
        )  # fmt: skip

    def perplexity(self, model: Any, examples: list[Example]) -> float:
        batches = by_length(examples, self.batch_size, self.max_batch_tokens, self.pad)
        return math.exp(mean_loss(model, batches, NextToken(), self.device))

    def logprobs(self, model: Any, examples: list[Example]) -> list[float]:
        return reply_logprobs(
            model,
            examples,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            pad_id=self.pad,
            device=self.device,
        )

    def answers(self, model: Any, guard: GuardSet) -> list[bool]:
        """Whether each of the guard's questions is answered right (greedy)."""
        answering = Answering(self.tokenizer, self.eos, self.batch_size, self.question_max_new_tokens)
        return answering.right(model, guard.questions, guard.prompts)

    @contextlib.contextmanager
    def attached(self, adapter_dir: str | None) -> Iterator[Any]:
        """The base model with ``adapter_dir`` attached (the base itself for None), taken off after."""
        try:
            yield self._attach(adapter_dir)
        finally:
            self._detach()

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
