"""The English conversations of the ``chatterbot-corpus`` package, by category: stand-in community chat for
demos, tests and the benchmarks. (The nightly gate's general guard is plain prose and questions, guard.py.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

from trainer.errors import DataError


def _english_dir() -> Path:
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or spec.origin is None:
        raise DataError("the general set comes from the chatterbot-corpus package: `pip install chatterbot-corpus`")
    return Path(spec.origin).parent / "data" / "english"


def categories() -> list[str]:
    return sorted(path.stem for path in _english_dir().glob("*.yml"))


def exchanges(category: str) -> list[list[tuple[str, str]]]:
    """The category's conversations, each a list of (user text, reply) pairs."""
    path = _english_dir() / f"{category}.yml"
    if not path.is_file():
        raise DataError(f"chatterbot-corpus has no English category {category!r}; known: {', '.join(categories())}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for lines in data.get("conversations") or []:
        texts = [str(line).strip() for line in lines if line is not None]
        pairs = [(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2) if texts[i] and texts[i + 1]]
        if pairs:
            out.append(pairs)
    return out


# tech_support is 1,050 exchanges but only 10 distinct ones
DEGENERATE = {"tech_support"}
OPENINGS = ["", "Hi! ", "Hey, ", "So, ", "Quick one: ", "Hello there. ", "Tell me: ", "Honestly, "]


def community_chats(count: int, exclude: list[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """``count`` exchanges from the categories not in ``exclude``, as (chat id, exchanges) pairs: stand-in
    community talk for demos, tests and the benchmark. Past the corpus's end the user's wording varies."""
    pool = [
        (f"{name}-{index}", pairs)
        for name in categories()
        if name not in exclude and name not in DEGENERATE
        for index, pairs in enumerate(exchanges(name))
    ]
    chats, taken, lap = [], 0, 0
    while taken < count:
        for position, (chat, pairs) in enumerate(pool):
            opening = OPENINGS[(lap + position) % len(OPENINGS)]  # the corpus repeats itself too
            pairs = [(opening + user, reply) for user, reply in pairs][: count - taken]
            chats.append((f"{chat}-{lap}", pairs))
            taken += len(pairs)
            if taken >= count:
                break
        lap += 1
    return chats


async def log_chats(
    store: Any, chats: list[tuple[str, list[tuple[str, str]]]], users: int, consent: str, first: int = 0
) -> None:
    """Opt users ``demo:first`` .. in and record the chats as their turns (round robin), as the brain logs them."""
    names = [f"demo:{n}" for n in range(first, first + users)]
    for name in names:
        await store.profiles.opt_in(name, consent)
    for index, (chat, pairs) in enumerate(chats):
        user = names[index % users]
        for text, reply in pairs:
            state = await store.chats.load_state(user, "demo", chat, False)
            await store.chats.record_turn(
                user, chat, since=state.since,
                user_turn={"role": "user", "text": text, "ts": 0, "tokens": 0},
                assistant_turn={"role": "assistant", "text": reply, "ts": 0, "tokens": 0},
                max_turns=24, max_tokens=1536, ttl_s=3600, display_name="", persona="assistant",
            )  # fmt: skip
