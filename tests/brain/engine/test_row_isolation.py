"""One request's failure is its own: the other rows of the batch finish with their solo greedy replies."""

from __future__ import annotations

import asyncio

import pytest
import torch

from brain.engine.batching import Engine, EngineError, GenerationRequest, RequestError
from brain.engine.model_loading import LoadedModel
from brain.engine.sampling import SamplingError, make_sampler, pick_tokens
from brain.engine.text import TextStream, TextStreamError
from tests.brain.engine.helpers import collect, random_prompts, reference_greedy, worker_paused
from tests.support.eventually import eventually

# with the scores of the prompt's tokens divided by a penalty that is 0 in float32, they overflow to inf
OVERFLOWING_PENALTY = 1e-300


def greedy(prompt: list[int], max_new_tokens: int) -> GenerationRequest:
    return GenerationRequest(prompt_ids=prompt, max_new_tokens=max_new_tokens)


async def alone(engine: Engine, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The greedy reply of ``prompt`` with the engine to itself (matched to model.generate in test_engine_batching)."""
    assert engine.active == 0 and engine.waiting == 0
    return await collect(engine.submit(greedy(prompt, max_new_tokens)))


class TokenizerFailingOn:
    """The real tokenizer, except that decoding breaks on one token id (a tokenizer with a bad vocabulary entry)."""

    def __init__(self, tokenizer, bad_id: int) -> None:
        self.tokenizer, self.bad_id = tokenizer, bad_id

    def decode(self, ids: list[int], **options) -> str:
        if self.bad_id in ids:
            raise KeyError(f"no text for token {self.bad_id}")
        return self.tokenizer.decode(ids, **options)


async def test_requests_that_cannot_start_fail_alone(tiny: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny)
    prompts = random_prompts(7, seed=21, longest=30)
    lengths = [12, 20, 28, 36]
    bad_seed = GenerationRequest(prompt_ids=prompts[4], max_new_tokens=8, temperature=0.8, seed=1)
    bad_seed.seed = 2**64  # set after the request's own check, as any caller could
    overflowing = GenerationRequest(
        prompt_ids=prompts[5], max_new_tokens=8, temperature=1.0, repetition_penalty=OVERFLOWING_PENALTY
    )
    vocab = tiny.model.get_input_embeddings().num_embeddings

    async with worker_paused(engine):  # everything below arrives in one step, most of it in one prefill
        healthy = [engine.submit(greedy(prompt, length)) for prompt, length in zip(prompts, lengths, strict=False)]
        seed_handle = engine.submit(bad_seed)
        overflow_handle = engine.submit(overflowing)
        outside_handle = engine.submit(greedy(prompts[6], 8))
        outside_handle.request.prompt_ids.append(vocab)  # past submit's vocabulary check: the prefill fails

    with pytest.raises(RequestError, match=r"seed must be between 0 and 2\*\*64 - 1, not 18446744073709551616"):
        await collect(seed_handle)
    with pytest.raises(RequestError, match="no usable token scores"):
        await collect(overflow_handle)
    with pytest.raises(EngineError, match="IndexError"):
        await collect(outside_handle)
    for handle in (seed_handle, overflow_handle, outside_handle):
        assert handle.finish_reason == "error"
    for index, handle in enumerate(healthy):
        assert await collect(handle) == reference_greedy(tiny, prompts[index], lengths[index]), f"request {index}"
        assert handle.finish_reason in {"stop", "length"}
    assert engine.active == 0 and engine.waiting == 0
    after = random_prompts(1, seed=27)[0]
    assert await collect(engine.submit(greedy(after, 10))) == reference_greedy(tiny, after, 10)


async def test_a_row_failing_mid_batch_leaves_the_others_running(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama)
    prompts = random_prompts(5, seed=22, longest=40)
    early = [engine.submit(greedy(prompt, 40)) for prompt in prompts[:3]]
    replies = {index: [await anext(handle)] for index, handle in enumerate(early)}

    short, long = sorted(prompts[3:5], key=len)
    async with worker_paused(engine):  # the failing row joins the middle of the batch, not its end
        failing = engine.submit(
            GenerationRequest(
                prompt_ids=short, max_new_tokens=40, temperature=0.7, repetition_penalty=OVERFLOWING_PENALTY
            )
        )
        late = engine.submit(greedy(long, 40))

    with pytest.raises(RequestError, match="no usable token scores"):
        await collect(failing)
    for index, handle in enumerate(early):
        assert replies[index] + await collect(handle) == reference_greedy(tiny_llama, prompts[index], 40)
    assert await collect(late) == reference_greedy(tiny_llama, long, 40)
    assert engine.active == 0


async def test_a_tiny_temperature_samples_like_greedy(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama)
    prompts = random_prompts(3, seed=23)
    # 1e-39 / a score overflows float32: unless the best score is shifted to 0 first, every score is inf
    tiny_temperature = [
        engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=20, temperature=1e-39, seed=index))
        for index, prompt in enumerate(prompts)
    ]
    for prompt, handle in zip(prompts, tiny_temperature, strict=True):
        assert await collect(handle) == reference_greedy(tiny_llama, prompt, 20)


async def test_a_reply_the_tokenizer_fails_on_ends_alone(tiny_llama: LoadedModel, start_engine) -> None:
    steps: list[int] = []
    engine = start_engine(tiny_llama, eos_token_ids=set(), on_step=lambda rows, tokens: steps.append(rows))
    tokenizer = tiny_llama.tokenizer
    prompts = [tokenizer.encode(text) for text in ("The cat sat on", "Water boils at", "How are you", "Music")]
    expected = await alone(engine, prompts[0], 150)
    steps.clear()
    bad_id = expected[5]
    assert bad_id not in expected[:5]

    async with worker_paused(engine):
        broken = TextStream(engine.submit(greedy(prompts[0], 150)), TokenizerFailingOn(tokenizer, bad_id))
        healthy = [TextStream(engine.submit(greedy(prompt, 150)), tokenizer) for prompt in prompts[1:]]
    results = await asyncio.gather(
        broken.complete(), *(stream.complete() for stream in healthy), return_exceptions=True
    )
    assert steps[-1] == 3, "the failed stream's row was still decoded when the others finished"

    assert isinstance(results[0], TextStreamError)
    assert "turning the reply's tokens into text failed: KeyError" in str(results[0])
    assert broken.finish_reason == "error"
    assert broken.text == tokenizer.decode(expected[:5], skip_special_tokens=True)
    await collect(broken.handle)  # the engine ended the request early, freeing its row
    assert broken.handle.finish_reason == "cancelled" and len(broken.token_ids) < 150
    for prompt, stream, text in zip(prompts[1:], healthy, results[1:], strict=True):
        assert stream.token_ids == await alone(engine, prompt, 150)
        assert text == tokenizer.decode(stream.token_ids, skip_special_tokens=True)
        assert stream.finish_reason == "length"


async def test_a_client_that_goes_away_frees_its_row(tiny_llama: LoadedModel, start_engine) -> None:
    steps: list[int] = []
    engine = start_engine(tiny_llama, eos_token_ids=set(), on_step=lambda rows, tokens: steps.append(rows))
    tokenizer = tiny_llama.tokenizer
    prompts = random_prompts(3, seed=24)
    deltas: list[str] = []

    async def client(stream: TextStream) -> None:  # what a streaming HTTP response does with a reply
        async for delta in stream:
            deltas.append(delta)

    async with worker_paused(engine):
        leaving = TextStream(engine.submit(greedy(prompts[0], 400)), tokenizer)
        staying = [TextStream(engine.submit(greedy(prompt, 120)), tokenizer) for prompt in prompts[1:]]
    connection = asyncio.create_task(client(leaving))
    others = [asyncio.create_task(stream.complete()) for stream in staying]
    await eventually(lambda: deltas, "the leaving client got its first delta")
    connection.cancel()  # the client disconnected
    with pytest.raises(asyncio.CancelledError):
        await connection
    cancelled_at = len(steps)
    texts = await asyncio.gather(*others)

    assert 3 not in steps[cancelled_at + 1 :], "the departed client's row was still decoded"
    assert steps[-1] == 2, "the other replies did not go on after the client left"
    unread = await collect(leaving.handle)
    assert leaving.handle.finish_reason == "cancelled" and len(leaving.token_ids) + len(unread) < 400
    for prompt, stream, text in zip(prompts[1:], staying, texts, strict=True):
        assert stream.token_ids == await alone(engine, prompt, 120)
        assert text == tokenizer.decode(stream.token_ids, skip_special_tokens=True)


async def test_a_failed_decode_step_fails_its_rows_and_the_engine_serves_on(
    tiny_gpt2: LoadedModel, start_engine
) -> None:
    # a context length beyond GPT-2's 512 learned positions: decoding past them fails in the shared forward
    engine = start_engine(tiny_gpt2, context_length=1000)
    async with worker_paused(engine):
        too_long = engine.submit(greedy([7] * 505, 20))
        beside = engine.submit(greedy(random_prompts(1, seed=25)[0], 400))

    for handle in (too_long, beside):  # no one row can be blamed for the forward pass of the whole batch
        with pytest.raises(EngineError, match="generation failed: IndexError"):
            await collect(handle)
        assert handle.finish_reason == "error"
    prompt = random_prompts(1, seed=26)[0]
    assert await collect(engine.submit(greedy(prompt, 16))) == reference_greedy(tiny_gpt2, prompt, 16)


def test_pick_tokens_fails_only_the_broken_rows() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    logits[1] = float("nan")  # a row the model itself broke
    logits[2, 7] = 1e6  # the repetition penalty below sends this score to inf
    plain = make_sampler(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=None, device="cpu")
    overflowing = make_sampler(
        temperature=0.9, top_p=1.0, top_k=0, repetition_penalty=OVERFLOWING_PENALTY, seed=1, device="cpu"
    )
    one_choice = make_sampler(temperature=0.9, top_p=1.0, top_k=1, repetition_penalty=1.0, seed=2, device="cpu")

    picks = pick_tokens(logits, [plain, plain, overflowing, one_choice], [[1], [1], [7], [1]])

    assert picks[0] == logits[0].argmax().item()
    assert isinstance(picks[1], SamplingError) and "NaN" in str(picks[1])
    assert isinstance(picks[2], SamplingError) and "no usable token scores" in str(picks[2])
    assert picks[3] == logits[3].argmax().item()


def test_unusable_settings_are_refused_up_front(tiny_llama: LoadedModel) -> None:
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match="seed must be an integer between 0 and 2\\*\\*64 - 1"):
            GenerationRequest(prompt_ids=[5], max_new_tokens=4, seed=seed)
    assert GenerationRequest(prompt_ids=[5], max_new_tokens=4, seed=2**64 - 1).seed == 2**64 - 1
    for setting in ("temperature", "top_p", "repetition_penalty"):
        with pytest.raises(ValueError, match=f"{setting} must be a finite number"):
            GenerationRequest(prompt_ids=[5], max_new_tokens=4, **{setting: float("nan")})
    with pytest.raises(ValueError, match="temperature must be a finite number, not inf"):
        GenerationRequest(prompt_ids=[5], max_new_tokens=4, temperature=float("inf"))
    with pytest.raises(ValueError, match="prompt_ids must be integer token ids"):
        GenerationRequest(prompt_ids=[5, 6.5], max_new_tokens=4)
    with pytest.raises(SamplingError, match="seed must be between 0 and 2\\*\\*64 - 1, not -3"):
        make_sampler(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=-3, device="cpu")
    with pytest.raises(ValueError, match="stop strings must be text"):
        TextStream(iter(()), tiny_llama.tokenizer, stop=["ok", None])
