"""What the engine tests share: prompts, the solo greedy reference, and a way to make requests arrive together."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch

from brain.engine.batching import Engine
from brain.engine.model_loading import LoadedModel


def random_prompts(count: int, *, seed: int = 0, longest: int = 60) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 500) for _ in range(rng.randrange(1, longest))] for _ in range(count)]


def reference_greedy(loaded: LoadedModel, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The reply of plain ``model.generate`` for this prompt alone, without its final EOS."""
    eos = sorted(loaded.eos_token_ids)
    output = loaded.model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos[0],
    )
    reply = output[0, len(prompt) :].tolist()
    return reply[:-1] if reply and reply[-1] in eos else reply


async def collect(handle) -> list[int]:
    return [token async for token in handle]


@asynccontextmanager
async def worker_paused(engine: Engine) -> AsyncIterator[None]:
    """Hold the engine between two steps; whatever is submitted meanwhile joins the batch in one step."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(60)

    job = asyncio.ensure_future(engine.between_steps(hold))
    if not await asyncio.to_thread(entered.wait, 60):
        raise AssertionError("the engine never got between two steps")
    try:
        yield
    finally:
        release.set()
        await job
