"""Facts picked out of a member's message by the model: what to ask it, and which of its answers to keep. The
memory service (service.py) runs it in the background (memory.extract_facts).

After a reply is stored, a message that speaks of its author ("I", "my") is given to the model with a few
examples; each line it answers is kept only if it is grounded in the message (its content words are the
message's own), so that a small model's inventions ("My name is Tom." copied from an example) are dropped.
A kept fact quotes the message it came from and belongs to the chat it was said in (facts.visible).
"""

from __future__ import annotations

import re

from brain.api_models import SamplingParams
from brain.memory.recall import terms

# a message says something about its author only if it speaks of them; the rest is never given to the model
_FIRST_PERSON = re.compile(r"\b(i|i'm|im|i've|i'd|my|mine|me)\b", re.IGNORECASE)
MAX_MESSAGE_CHARS = 600
MAX_FACTS_PER_MESSAGE = 3
# a fact's content words that must appear in the message
GROUNDED_SHARE = 0.75
# no DRY: a fact is copied from the member's own words, which DRY would penalise as a repeat
SAMPLING = SamplingParams(
    temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=48, dry_multiplier=0.0
)

INSTRUCTIONS = (
    "You pick out the facts that a user states about themselves in a message: their name, where they live, "
    "their work, family, pets, likes and plans. Write each fact as a short sentence in the first person, on a "
    'line of its own that starts with "- ". If the message states no such fact, write "- none".'
)
EXAMPLES = [
    ("I'm Tom and I have two cats. What's the weather like in Paris?", "- My name is Tom.\n- I have two cats."),
    ("Can you explain how rainbows form?", "- none"),
    ("my sister Ana just started studying law, any tips for her?", "- My sister is called Ana."),
]


def worth_mining(message: str) -> bool:
    """Whether a message may state a fact about its author (and is short enough to ask about)."""
    return len(message) <= MAX_MESSAGE_CHARS and bool(_FIRST_PERSON.search(message))


def extraction_messages(message: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": INSTRUCTIONS}]
    for example, answer in EXAMPLES:
        messages += [{"role": "user", "content": example}, {"role": "assistant", "content": answer}]
    return messages + [{"role": "user", "content": message}]


def grounded_facts(answer: str, message: str) -> list[str]:
    """The lines of the model's answer that state a fact of the message, in its own words."""
    said = set(terms(message))
    facts: list[str] = []
    for line in answer.splitlines():
        text = line.strip().lstrip("-*• ").strip()
        words = terms(text)
        if not words or text.lower().rstrip(".") == "none" or not _FIRST_PERSON.search(text):
            continue
        if sum(word in said for word in words) / len(words) < GROUNDED_SHARE:
            continue
        if text not in facts:
            facts.append(text)
    return facts[:MAX_FACTS_PER_MESSAGE]
