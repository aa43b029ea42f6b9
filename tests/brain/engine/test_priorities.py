"""Background work on the real engine: the same replies as alone, whether its prompt went in chunks or it
gave its row to a member and resumed."""

from __future__ import annotations

import asyncio
import random

from brain.engine.batching import GenerationRequest
from brain.engine.model_loading import LoadedModel
from tests.brain.engine.helpers import collect, reference_greedy, worker_paused


def prompt_of(length: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(3, 500) for _ in range(length)]


async def test_a_background_prompt_taken_in_chunks_gives_the_reply_it_gives_alone(
    tiny: LoadedModel, start_engine
) -> None:
    engine = start_engine(tiny, eos_token_ids=set(), prefix_cache_mib=16)
    long_prompt, member_prompt = prompt_of(400, 1), prompt_of(30, 2)
    background = engine.submit(GenerationRequest(prompt_ids=long_prompt, max_new_tokens=20, priority="background"))
    member = engine.submit(GenerationRequest(prompt_ids=member_prompt, max_new_tokens=20))

    assert await collect(background) == reference_greedy(tiny, long_prompt, 20)
    assert await collect(member) == reference_greedy(tiny, member_prompt, 20)
    assert background.finish_reason == member.finish_reason == "length"


async def test_background_work_gives_its_row_to_a_member_and_resumes_with_the_same_reply(
    tiny_llama: LoadedModel, start_engine
) -> None:
    preempted: list[str] = []
    engine = start_engine(tiny_llama, max_batch_size=1, eos_token_ids=set(), prefix_cache_mib=16)
    engine.scheduler.on_background = preempted.append
    work, question = prompt_of(40, 3), prompt_of(20, 4)
    background = engine.submit(GenerationRequest(prompt_ids=work, max_new_tokens=60, priority="background"))
    first = await background.__anext__()
    async with worker_paused(engine):
        member = engine.submit(GenerationRequest(prompt_ids=question, max_new_tokens=10))
        rest = asyncio.ensure_future(collect(background))

    assert await collect(member) == reference_greedy(tiny_llama, question, 10)
    assert [first, *await rest] == reference_greedy(tiny_llama, work, 60)
    assert "preempted" in preempted
