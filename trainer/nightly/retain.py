"""What a night's adapter keeps besides what members taught it: the base model's next-token distributions on
its own answers to general questions, distilled into every step beside the night's data (objectives.Retain;
replay, as InstructGPT's PPO-ptx mixes pretraining data into its policy updates), so that a taste learned hard
does not take the base model's facts with it. Offline (the *plain* taste learned from its own pick of 8 sampled
replies to 40 prompts, 32 steps), the guard's questions lost at steps 8, 16, 24, 32 were 0, 1, 2, 2 without
replay, 0, 1, 2, 4 when the base model's answers were learned as plain next-token targets, and 0, 1, 1, 1 with
distillation.

The questions are chatterbot-corpus's trivia and science (corpus.py). The general guard's own questions, and
any question whose answer names one of the guard's answers, are left out: the guard stays a test the adapter
never saw. Only answers the base model finished within the budget are kept (a cut one would teach replies to
stop mid-sentence).
"""

from __future__ import annotations

import random
import re
from typing import Any

from trainer.core.evaluation import greedy_replies
from trainer.core.examples import ChatRenderer, Example
from trainer.nightly.corpus import exchanges
from trainer.nightly.guard import Question

CATEGORIES = ("trivia", "science")
RETAIN_MAX_NEW_TOKENS = 48


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


def general_questions(limit: int, seed: int, guard: list[Question]) -> list[str]:
    """Up to ``limit`` distinct questions of the corpus (a seeded choice), none of them the guard's."""
    guarded = {_key(q.question) for q in guard}
    found: dict[str, str] = {}
    for category in CATEGORIES:
        for conversation in exchanges(category):
            for text, _ in conversation:
                if text.rstrip().endswith("?") and _key(text) not in guarded:
                    found.setdefault(_key(text), text)
    questions = sorted(found.values())
    random.Random(seed).shuffle(questions)
    return questions[:limit]


def retain_examples(
    model: Any,
    tokenizer: Any,
    renderer: ChatRenderer,
    system: str,
    questions: list[str],
    guard: list[Question],
    *,
    eos_token_ids: list[int],
    batch_size: int,
    max_new_tokens: int,
    device: Any,
) -> list[Example]:
    """The base model's greedy answer to each question (under ``system``) as an example, where it finished and
    names none of the guard's answers. ``model`` must be the base model, without an adapter."""
    head = [{"role": "system", "content": system}] if system else []
    prompts = [head + [{"role": "user", "content": question}] for question in questions]
    ids = [renderer.ids(renderer.text(prompt, prompt=True)) for prompt in prompts]
    answers = greedy_replies(
        model, tokenizer, ids, batch_size=batch_size, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids,
        pad_id=tokenizer.pad_token_id, device=device,
    )  # fmt: skip
    examples = []
    for prompt, answer in zip(prompts, answers, strict=True):
        finished = len(tokenizer(answer, add_special_tokens=False).input_ids) < max_new_tokens
        if not answer or not finished or any(q.is_right(answer) for q in guard):
            continue
        parts = renderer.completion_parts(prompt, answer)
        if parts is not None:
            examples.append(renderer.completion(*parts))
    return examples
