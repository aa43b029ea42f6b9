from __future__ import annotations

import random

import pytest

from brain.engine.batching import GenerationRequest
from brain.engine.model_loading import LoadedModel
from brain.engine.text import TextStream, split_at_stop


class ReplayedTokens:
    """A finished generation played back token by token, as an engine handle would stream it."""

    def __init__(self, token_ids: list[int], finish_reason: str = "length") -> None:
        self.token_ids = token_ids
        self.finish_reason = finish_reason
        self.cancelled = False

    async def __aiter__(self):
        for token in self.token_ids:
            if self.cancelled:
                return
            yield token

    def cancel(self) -> None:
        self.cancelled = True


def test_split_holds_back_what_may_start_a_stop_string() -> None:
    assert split_at_stop("Hello wor", ["world!"]) == ("Hello ", "wor", False)
    assert split_at_stop("Hello world! More", ["world!"]) == ("Hello ", "", True)
    assert split_at_stop("Hello wor", ["world!"], final=True) == ("Hello wor", "", False)
    assert split_at_stop("a\nUs", ["\nUser:", "###"]) == ("a", "\nUs", False)
    assert split_at_stop("end ##", ["\nUser:", "###"]) == ("end ", "##", False)
    assert split_at_stop("x ### then \nUser:", ["\nUser:", "###"]) == ("x ", "", True)
    assert split_at_stop("plain text", []) == ("plain text", "", False)


async def test_multibyte_characters_are_never_split(tiny_llama: LoadedModel) -> None:
    text = "Café 東京, naïve 🙂 and a jalapeño."
    ids = tiny_llama.tokenizer.encode(text)
    assert any("\ufffd" in tiny_llama.tokenizer.decode([token]) for token in ids), "needs split characters"
    stream = TextStream(ReplayedTokens(ids), tiny_llama.tokenizer)
    deltas = [delta async for delta in stream]
    assert all("\ufffd" not in delta for delta in deltas)
    assert "".join(deltas) == stream.text == text
    assert stream.finish_reason == "length"


async def test_deltas_join_to_the_decoded_reply(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama, eos_token_ids=set())
    prompt = tiny_llama.tokenizer.encode("Please tell me a short story")
    handle = engine.submit(GenerationRequest(prompt_ids=prompt, max_new_tokens=80, temperature=1.0, seed=1))
    stream = TextStream(handle, tiny_llama.tokenizer)
    deltas = [delta async for delta in stream]
    assert "".join(deltas) == stream.text
    assert stream.text == tiny_llama.tokenizer.decode(stream.token_ids, skip_special_tokens=True)
    assert len(stream.token_ids) == 80 and stream.finish_reason == "length"


async def test_stop_string_ends_the_reply_and_frees_the_row(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama, eos_token_ids=set())
    tokenizer = tiny_llama.tokenizer
    prompt = tokenizer.encode("How are you today?")

    def request() -> GenerationRequest:
        return GenerationRequest(prompt_ids=prompt, max_new_tokens=60, temperature=1.0, seed=3)

    full = await TextStream(engine.submit(request()), tokenizer).complete()
    rng = random.Random(0)
    start = rng.randrange(10, len(full) - 20)
    stop = full[start : start + 7]  # spans several tokens
    expected = full[: full.index(stop)]

    handle = engine.submit(request())
    stream = TextStream(handle, tokenizer, stop=["never generated", stop])
    deltas = [delta async for delta in stream]

    assert "".join(deltas) == stream.text == expected
    assert stream.finish_reason == "stop"
    await TextStream(handle, tokenizer).complete()  # the engine ends the request early
    assert handle.finish_reason == "cancelled" and engine.active == 0


async def test_text_that_only_looks_like_a_stop_string_is_released(tiny_llama: LoadedModel, start_engine) -> None:
    engine = start_engine(tiny_llama, eos_token_ids=set())
    tokenizer = tiny_llama.tokenizer
    request = GenerationRequest(prompt_ids=tokenizer.encode("Hello"), max_new_tokens=40, temperature=1.0, seed=5)
    full = await TextStream(engine.submit(request), tokenizer).complete()
    lookalike = full[-4:] + "\u2603 not generated"

    stream = TextStream(engine.submit(request), tokenizer, stop=[lookalike])
    assert await stream.complete() == full
    assert stream.finish_reason == "length"


def test_empty_stop_strings_are_refused(tiny_llama: LoadedModel) -> None:
    with pytest.raises(ValueError, match="stop strings must not be empty"):
        TextStream(ReplayedTokens([]), tiny_llama.tokenizer, stop=[""])
