"""Conversations as token ids, through the model's own chat template, with labels for the loss.

A conversation becomes one or more examples: the system prompt, then as many whole turns as fit in
``max_tokens``. Labels are the replies' tokens (the assistant's content and its end-of-turn token) or,
with ``loss_on="all"``, every token after the system prompt; other positions hold IGNORE.
Each part is tokenized on its own, the way the brain sees them: a rendered prompt, then generated tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100


@dataclass
class Example:
    ids: list[int]
    labels: list[int]


@dataclass
class PromptSample:
    ids: list[int]
    reference: str


class Renderer:
    def __init__(
        self,
        tokenizer: Any,
        system_prompts: dict[str, str],
        default_persona: str,
        *,
        loss_on: str = "assistant",
        max_tokens: int = 384,
    ):
        if loss_on not in ("assistant", "all"):
            raise ValueError(f"loss_on must be 'assistant' or 'all', not {loss_on!r}")
        self.tokenizer = tokenizer
        self.system_prompts = system_prompts
        self.default_persona = default_persona
        self.loss_on = loss_on
        self.max_tokens = max_tokens

    def _text(self, messages: list[dict[str, str]], prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def system(self, persona: str) -> list[dict[str, str]]:
        prompt = self.system_prompts.get(persona) or self.system_prompts.get(self.default_persona, "")
        return [{"role": "system", "content": prompt}]

    def turn_parts(self, history: list[dict[str, str]], user: str, reply: str) -> tuple[str, str]:
        """The text a turn adds to ``history``: the user message and the reply header, then the reply."""
        before = self._text(history)
        asked = self._text(history + [{"role": "user", "content": user}], prompt=True)
        full = self._text(history + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}])
        if not (asked.startswith(before) and full.startswith(asked)):
            raise ValueError("the tokenizer's chat template does not render conversations as growing prefixes")
        return asked[len(before) :], full[len(asked) :]

    def examples(self, conversation: dict[str, Any]) -> list[Example]:
        system = self.system(conversation.get("persona", ""))
        head = self._ids(self._text(system))
        out: list[Example] = []
        ids, labels = list(head), [IGNORE] * len(head)
        history: list[dict[str, str]] = []
        for turn in conversation["turns"]:
            # the last two turns are context enough to render this one's text exactly
            asked, answered = self.turn_parts(system + history[-4:], turn["user"], turn["reply"])
            history += [
                {"role": "user", "content": turn["user"]},
                {"role": "assistant", "content": turn["reply"]},
            ]
            prompt_ids, reply_ids = self._ids(asked), self._ids(answered)
            if len(ids) + len(prompt_ids) + len(reply_ids) > self.max_tokens and len(ids) > len(head):
                out.append(Example(ids, labels))
                ids, labels = list(head), [IGNORE] * len(head)
            room = self.max_tokens - len(ids) - len(prompt_ids)
            if room < 4:  # one message longer than the whole window: nothing useful fits
                continue
            reply_ids = reply_ids[:room]
            ids += prompt_ids + reply_ids
            labels += (prompt_ids if self.loss_on == "all" else [IGNORE] * len(prompt_ids)) + self._reply_labels(
                reply_ids
            )
        if len(ids) > len(head):
            out.append(Example(ids, labels))
        return out

    def _reply_labels(self, reply_ids: list[int]) -> list[int]:
        """The reply up to its end-of-turn token; what the template adds after that is never generated."""
        special = set(self.tokenizer.all_special_ids)
        ends = [i for i, token in enumerate(reply_ids) if token in special]
        cut = ends[-1] + 1 if ends else len(reply_ids)
        return reply_ids[:cut] + [IGNORE] * (len(reply_ids) - cut)

    def prompts(self, conversations: list[dict[str, Any]], count: int, context_turns: int = 2) -> list[PromptSample]:
        """Up to ``count`` prompts (system, a few earlier turns, the user's message) with the real reply."""
        samples: list[PromptSample] = []
        for conv in conversations:
            system = self.system(conv.get("persona", ""))
            for index, turn in enumerate(conv["turns"]):
                if len(samples) >= count:
                    return samples
                messages = list(system)
                for earlier in conv["turns"][max(0, index - context_turns) : index]:
                    messages += [
                        {"role": "user", "content": earlier["user"]},
                        {"role": "assistant", "content": earlier["reply"]},
                    ]
                messages.append({"role": "user", "content": turn["user"]})
                ids = self._ids(self._text(messages, prompt=True))[-self.max_tokens :]
                samples.append(PromptSample(ids, turn["reply"]))
        return samples


def encode_all(renderer: Renderer, conversations: list[dict[str, Any]]) -> list[Example]:
    return [example for conv in conversations for example in renderer.examples(conv)]


def chunks(examples: list[Example], max_examples: int, max_tokens: int) -> list[list[Example]]:
    """Consecutive groups of at most ``max_examples`` whose padded size stays within ``max_tokens``
    (an example longer than that goes alone). Sort by length first for the least padding."""
    groups: list[list[Example]] = []
    for example in examples:
        group = groups[-1] if groups else None
        longest = max([len(e.ids) for e in group] + [len(example.ids)]) if group else 0
        if group and len(group) < max_examples and longest * (len(group) + 1) <= max_tokens:
            group.append(example)
        else:
            groups.append([example])
    return groups


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch: input_ids, attention_mask and labels (IGNORE on padding)."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.ids)
        ids[row, :n] = torch.tensor(example.ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_losses(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood of the labelled tokens, and how many there were."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift_logits = logits[:, :-1].float()
    shift_labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, (shift_labels != IGNORE).sum()
