"""The cleaned conversations of a run (see clean.py) as the core's chat messages, examples and prompts.

A conversation's system message is its persona's prompt (the default persona's when it has none of its
own), as the brain puts it in front of every chat; then each turn: the user's message, the reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.core.examples import ChatRenderer, Example, Message


@dataclass
class PromptSample:
    ids: list[int]
    reference: str


class Personas:
    def __init__(self, system_prompts: dict[str, str], default_persona: str):
        self.system_prompts = system_prompts
        self.default_persona = default_persona

    def system(self, persona: str) -> list[Message]:
        prompt = self.system_prompts.get(persona) or self.system_prompts.get(self.default_persona, "")
        return [{"role": "system", "content": prompt}]

    def messages(self, conversation: dict[str, Any]) -> list[Message]:
        messages = self.system(conversation.get("persona", ""))
        for turn in conversation["turns"]:
            messages += [{"role": "user", "content": turn["user"]}, {"role": "assistant", "content": turn["reply"]}]
        return messages


def encode_all(renderer: ChatRenderer, personas: Personas, conversations: list[dict[str, Any]]) -> list[Example]:
    return [example for conv in conversations for example in renderer.examples(personas.messages(conv))]


def prompts(
    renderer: ChatRenderer,
    personas: Personas,
    conversations: list[dict[str, Any]],
    count: int,
    context_turns: int = 2,
) -> list[PromptSample]:
    """Up to ``count`` prompts (system, a few earlier turns, the user's message) with the real reply."""
    samples: list[PromptSample] = []
    for conv in conversations:
        system = personas.system(conv.get("persona", ""))
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
            ids = renderer.ids(renderer.text(messages, prompt=True))[-renderer.max_tokens :]
            samples.append(PromptSample(ids, turn["reply"]))
    return samples
