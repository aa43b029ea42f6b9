from __future__ import annotations

import asyncio
import random

import pytest
import torch

from brain.engine.batching import EngineError, GenerationRequest
from brain.engine.model_loading import LoadedModel
from tests.brain.engine.helpers import collect, random_prompts, reference_greedy
from tests.support.eventually import eventually


async def test_concurrent_streams_match_unbatched_greedy(tiny: LoadedModel, start_engine) -> None:
    batch_sizes: list[int] = []
    engine = start_engine(tiny, max_batch_size=16, on_step=lambda rows, tokens: batch_sizes.append(rows))
    prompts = random_prompts(16)
    lengths = [random.Random(i).randrange(4, 40) for i in range(16)]

    async def arrive_and_stream(index: int) -> tuple[list[int], str | None]:
        await asyncio.sleep(0.002 * (index % 5))  # arrivals spread over several steps
        handle = engine.submit(GenerationRequest(prompt_ids=prompts[index], max_new_tokens=lengths[index]))
        return await collect(handle), handle.finish_reason

    batched = await asyncio.gather(*(arrive_and_stream(index) for index in range(16)))

    assert max(batch_sizes) > 1, "the requests were never batched together"
    for index, (reply, reason) in enumerate(batched):
        alone = engine.submit(GenerationRequest(prompt_ids=prompts[index], max_new_tokens=lengths[index]))
        assert reply == await collect(alone), f"request {index}: batched reply differs from its reply alone"
        assert reply == reference_greedy(tiny, prompts[index], lengths[index]), f"request {index}"
        assert reason in {"length", "stop"}
        assert (reason == "length") == (len(reply) == lengths[index])


async def test_requests_beyond_max_batch_size_wait_their_turn(tiny_llama: LoadedModel, start_engine) -> None:
    seen: list[tuple[int, int]] = []
    engine = start_engine(tiny_llama, max_batch_size=3, eos_token_ids=set())
    engine.on_step = lambda rows, tokens: seen.append((rows, engine.waiting))
    first_token_order: list[int] = []

    async def run(index: int, prompt: list[int]) -> list[int]:
        handle = engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=12))
        reply = []
        async for token in handle:
            if not reply:
                first_token_order.append(index)
            reply.append(token)
        return reply

    replies = await asyncio.gather(*(run(index, prompt) for index, prompt in enumerate(random_prompts(8))))

    assert all(len(reply) == 12 for reply in replies)
    assert max(rows for rows, _ in seen) == 3
    assert any(waiting > 0 for _, waiting in seen)
    assert sorted(first_token_order[:3]) == [0, 1, 2], "the first requests in were not served first"
    assert engine.active == 0 and engine.waiting == 0


async def test_finish_reasons_stop_and_length(tiny_llama: LoadedModel, start_engine) -> None:
    prompt = random_prompts(1, seed=3)[0]
    free = start_engine(tiny_llama, eos_token_ids=set())
    full = await collect(free.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=20)))
    stopper = full[6]
    expected = full[: full.index(stopper)]

    handle = free.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=20, stop_token_ids={stopper}))
    assert await collect(handle) == expected and handle.finish_reason == "stop"

    with_eos = start_engine(tiny_llama, eos_token_ids={stopper})
    handle = with_eos.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=20))
    assert await collect(handle) == expected and handle.finish_reason == "stop"

    handle = free.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=5))
    assert await collect(handle) == full[:5] and handle.finish_reason == "length"


async def test_reply_is_cut_at_the_context_length(tiny: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny, eos_token_ids=set())
    prompt = random_prompts(1, seed=4)[0] * 100
    prompt = prompt[: engine.context_length - 7]
    handle = engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=50))
    assert len(await collect(handle)) == 7
    assert handle.finish_reason == "length"


async def test_cancelled_request_frees_its_row(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama, max_batch_size=2, eos_token_ids=set())
    prompts = random_prompts(4, seed=5)
    gone = engine.submit(GenerationRequest(prompt_ids=prompts[0], max_new_tokens=400))
    explicit = engine.submit(GenerationRequest(prompt_ids=prompts[1], max_new_tokens=400))
    queued = engine.submit(GenerationRequest(prompt_ids=prompts[2], max_new_tokens=10))
    cancelled_in_queue = engine.submit(GenerationRequest(prompt_ids=prompts[3], max_new_tokens=10))
    cancelled_in_queue.cancel()

    received: list[int] = []

    async def client() -> None:
        async for token in gone:
            received.append(token)

    client_task = asyncio.create_task(client())
    await eventually(lambda: len(received) >= 3, "three tokens reached the client")
    client_task.cancel()  # the client went away
    await anext(explicit)
    explicit.cancel()

    assert len(await asyncio.wait_for(collect(queued), 30)) == 10
    assert queued.finish_reason == "length"
    for handle in (gone, explicit):
        assert len(await collect(handle)) < 400 and handle.finish_reason == "cancelled"
    assert await collect(cancelled_in_queue) == [] and cancelled_in_queue.finish_reason == "cancelled"
    assert engine.active == 0 and engine.waiting == 0


async def test_seeded_sampling_is_reproducible(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama, eos_token_ids=set())
    prompt = random_prompts(1, seed=6)[0]

    def sampled(seed: int, **options) -> GenerationRequest:
        settings = {"temperature": 1.0, "top_p": 0.95, "top_k": 50} | options
        return GenerationRequest(prompt_ids=prompt, max_new_tokens=24, seed=seed, **settings)

    alone = await collect(engine.submit(sampled(7)))
    # the same seeds again, now sharing the batch with greedy traffic
    greedy_traffic = [engine.submit(GenerationRequest(prompt_ids=p, max_new_tokens=24)) for p in random_prompts(3)]
    again, other_seed = await asyncio.gather(collect(engine.submit(sampled(7))), collect(engine.submit(sampled(8))))
    await asyncio.gather(*(collect(handle) for handle in greedy_traffic))

    assert again == alone
    assert other_seed != alone
    greedy = await collect(engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=24)))
    assert await collect(engine.submit(sampled(9, top_k=1))) == greedy


async def test_repetition_penalty_avoids_repeats(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama, eos_token_ids=set())
    prompt = random_prompts(1, seed=8)[0]
    plain = await collect(engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=30)))
    penalised = await collect(
        engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=30, repetition_penalty=1e4))
    )
    assert len(set(plain)) < len(plain), "the tiny model should repeat itself when greedy"
    assert len(set(penalised)) == len(penalised) and not set(penalised) & set(prompt)


async def test_beam_search(tiny: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny, eos_token_ids=set())
    prompt = random_prompts(1, seed=9)[0]
    request = GenerationRequest(prompt_ids=prompt, max_new_tokens=12)
    streaming = engine.submit(request)  # beam search runs between the steps of this stream
    one_beam, four_beams = await asyncio.gather(engine.beam_search(request, 1), engine.beam_search(request, 4))
    greedy = await collect(streaming)
    assert one_beam == greedy

    def log_prob(reply: list[int]) -> float:
        ids = torch.tensor([prompt + reply])
        with torch.no_grad():
            logits = tiny.model(ids).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
        return logits.gather(-1, torch.tensor(reply)[:, None]).sum().item()

    assert len(four_beams) == 12
    assert log_prob(four_beams) >= log_prob(greedy) - 1e-4


async def test_bad_requests_are_refused(tiny_llama: LoadedModel, start_engine) -> None:
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        GenerationRequest(prompt_ids=[], max_new_tokens=4)
    with pytest.raises(ValueError, match="top_p"):
        GenerationRequest(prompt_ids=[5], max_new_tokens=4, top_p=0)
    engine = start_engine(tiny_llama)
    with pytest.raises(ValueError, match="context"):
        engine.submit(GenerationRequest(prompt_ids=[5] * engine.context_length, max_new_tokens=4))
    with pytest.raises(ValueError, match="prompt token id 512 is outside the model's vocabulary of 512"):
        engine.submit(GenerationRequest(prompt_ids=[5, 512], max_new_tokens=4))
    with pytest.raises(ValueError, match="adapter 'alice-v3' is not loaded"):
        engine.submit(GenerationRequest(prompt_ids=[5], max_new_tokens=4, adapter="alice-v3"))
    engine.stop()
    with pytest.raises(EngineError, match="not running"):
        engine.submit(GenerationRequest(prompt_ids=[5], max_new_tokens=4))


async def test_stop_cancels_every_pending_request(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama, max_batch_size=2, eos_token_ids=set())
    handles = [engine.submit(GenerationRequest(prompt_ids=p, max_new_tokens=400)) for p in random_prompts(4)]
    await anext(handles[0])
    await asyncio.to_thread(engine.stop)
    for handle in handles:
        await asyncio.wait_for(collect(handle), 10)
        assert handle.finish_reason == "cancelled"
