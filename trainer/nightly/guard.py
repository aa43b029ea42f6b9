"""The general guard: text of another kind than the community's chat, which a candidate must not forget.

- Plain prose: an excerpt of public-domain books shipped in data/prose.txt (or the file that
  evaluation.prose_file names). Its perplexity may exceed the base model's by at most general_bound.
- Questions: short facts (data/questions.yaml, or evaluation.questions_file) asked under the default persona
  and answered greedily. Those the base model answers right must stay right.

The gate checks both on a night's candidate; the fine-tune checks both at every evaluation (ProseBound and
QuestionsKept, its step guards), so that the step it keeps is one the gate will not refuse for them.

Neither is ever trained on, and neither improves when a candidate learns the community's way of talking, so
a candidate that trades general ability for the community's taste is caught.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainer.core.evaluation import greedy_replies
from trainer.core.examples import ChatRenderer, Example, Message, text_windows
from trainer.core.finetuning import Batching
from trainer.core.text import load_clean_text
from trainer.errors import DataError

DATA = Path(__file__).parent / "data"
PROSE = DATA / "prose.txt"
QUESTIONS = DATA / "questions.yaml"
MAX_PROSE_CHARS = 1_000_000
MAX_QUESTIONS = 50


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(min_length=1, max_length=500)
    answers: list[str] = Field(min_length=1, max_length=10)  # any one of them, as a whole word, is right

    def is_right(self, reply: str) -> bool:
        return any(re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", reply, re.IGNORECASE) for answer in self.answers)


def load_prose(path: str | Path = "") -> str:
    text = load_clean_text(path or PROSE)
    if len(text) > MAX_PROSE_CHARS:
        raise DataError(f"{path}: {len(text):,} characters of prose; the guard reads at most {MAX_PROSE_CHARS:,}")
    return text


def load_questions(path: str | Path = "") -> list[Question]:
    source = Path(path or QUESTIONS).expanduser()
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataError(f"{source}: the guard's questions cannot be read: {error}") from None
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_QUESTIONS:
        raise DataError(f"{source}: expected a list of 1 to {MAX_QUESTIONS} {{question, answers}} entries")
    try:
        return [Question.model_validate(item) for item in data]
    except ValidationError as error:
        raise DataError(f"{source}: a question is malformed: {error}") from None


@dataclass
class GuardSet:
    prose: list[Example]  # windows of the prose, every token scored
    questions: list[Question]
    prompts: list[list[int]]  # each question as the model sees it (the default persona's system prompt first)


def guard_set(renderer: ChatRenderer, system_prompt: str, prose_file: str = "", questions_file: str = "") -> GuardSet:
    tokenizer = renderer.tokenizer
    ids = tokenizer(load_prose(prose_file), add_special_tokens=False, verbose=False)["input_ids"]
    prose = text_windows(ids, renderer.max_tokens)
    if not prose:
        raise DataError("the guard's prose is too short to score")
    questions = load_questions(questions_file)
    system: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompts = [
        renderer.ids(renderer.text(system + [{"role": "user", "content": q.question}], prompt=True)) for q in questions
    ]
    return GuardSet(prose=prose, questions=questions, prompts=prompts)


@dataclass(frozen=True)
class Answering:
    """How the guard's questions are answered: greedily, in batches of ``batch_size``, at most ``max_new_tokens``."""

    tokenizer: Any
    eos_token_ids: list[int]
    batch_size: int
    max_new_tokens: int

    def replies(self, model: Any, prompts: list[list[int]]) -> list[str]:
        return greedy_replies(
            model, self.tokenizer, prompts, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
            eos_token_ids=self.eos_token_ids, pad_id=self.tokenizer.pad_token_id,
            device=next(model.parameters()).device,
        )  # fmt: skip

    def right(self, model: Any, questions: list[Question], prompts: list[list[int]]) -> list[bool]:
        """Whether ``model`` answers each question (asked as ``prompts``) right."""
        replies = self.replies(model, prompts)
        return [question.is_right(reply) for question, reply in zip(questions, replies, strict=True)]


@dataclass(frozen=True)
class QuestionsKept:
    """The guard's questions the base model answers right: a step that loses more than ``may_lose`` of them is
    beyond the guard (a fine-tune's step guard, as the gate's check after)."""

    questions: list[Question]
    prompts: list[list[int]]
    answering: Answering
    may_lose: int

    @classmethod
    def of_base(cls, base: Any, guard: GuardSet, answering: Answering, may_lose: int) -> QuestionsKept:
        """The questions ``base`` (the model with its adapter off) answers right."""
        right = answering.right(base, guard.questions, guard.prompts)
        kept = [i for i, ok in enumerate(right) if ok]
        return cls([guard.questions[i] for i in kept], [guard.prompts[i] for i in kept], answering, may_lose)

    def beyond(self, model: torch.nn.Module, batching: Batching) -> float:
        lost = len(self.questions) - sum(self.answering.right(model, self.questions, self.prompts))
        return float(max(0, lost - self.may_lose))
