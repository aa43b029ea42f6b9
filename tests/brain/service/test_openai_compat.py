"""The official openai client against the brain's /v1/chat/completions and /v1/completions."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from brain.adapters import COMMUNITY
from brain.store import Store
from brain.store.client import connect
from tests.brain.test_adapters import make_adapter, publish
from tests.support.brain_server import running_brain
from tests.support.eventually import eventually


def test_openai_client_gets_a_completion_and_a_stream(brain):
    client = openai.OpenAI(base_url=f"{brain.url}/v1", api_key=brain.api_key)
    messages = [{"role": "user", "content": "Say something."}]
    completion = client.chat.completions.create(model="default", messages=messages, max_tokens=8, temperature=0)
    text = completion.choices[0].message.content
    assert text and completion.usage.completion_tokens > 0
    assert completion.choices[0].finish_reason in ("stop", "length")

    stream = client.chat.completions.create(
        model="default", messages=messages, max_tokens=8, temperature=0, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces).strip() == text.strip()
    assert [m.id for m in client.models.list().data]


def test_openai_client_sees_a_wrong_key(brain):
    client = openai.OpenAI(base_url=f"{brain.url}/v1", api_key="wrong", max_retries=0)
    try:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError as exc:
        assert exc.status_code == 401
    else:
        raise AssertionError("a wrong key was accepted")


def test_openai_client_gets_a_text_completion_the_same_from_text_or_token_ids(brain):
    client = openai.OpenAI(base_url=f"{brain.url}/v1", api_key=brain.api_key)
    prompt = "Once upon a time"
    whole = client.completions.create(model="default", prompt=prompt, max_tokens=8, temperature=0)
    text = whole.choices[0].text
    assert text and whole.usage.completion_tokens > 0 and whole.choices[0].finish_reason in ("stop", "length")

    stream = client.completions.create(
        model="default", prompt=prompt, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text, "the stream adds up to the whole completion"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

    plain = httpx.post(f"{brain.url}/v1/completions", headers=brain.headers(), json={"prompt": prompt}).json()
    assert plain["usage"]["prompt_tokens"] == whole.usage.prompt_tokens
    token_ids = brain.runtime.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    by_ids = client.completions.create(model="default", prompt=token_ids, max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == text


def test_a_completion_with_a_bad_prompt_is_refused_with_a_reason(brain):
    for prompt, status, word in (([0, 10**9], 400, "token ids"), ("   ", 422, "empty"), ([], 422, "empty")):
        response = httpx.post(f"{brain.url}/v1/completions", headers=brain.headers(), json={"prompt": prompt})
        assert response.status_code == status and word in response.text, response.text


def test_dry_under_llama_cpp_names_changes_a_looping_completion_and_bad_values_are_refused(brain):
    client = openai.OpenAI(base_url=f"{brain.url}/v1", api_key=brain.api_key)
    prompt = "one two one two one two one two one two"

    def complete(**dry: object) -> str:
        reply = client.completions.create(model="default", prompt=prompt, max_tokens=24, temperature=0, extra_body=dry)
        return reply.choices[0].text

    plain = complete(dry_multiplier=0)
    strong = {"dry_multiplier": 3.0, "dry_base": 2.0, "dry_allowed_length": 1, "dry_penalty_last_n": -1}
    assert complete(**strong, dry_sequence_breakers=["\n"]) != plain
    assert complete(dry_multiplier=0) == plain, "a request without DRY is not touched by one with it"
    for bad in (
        {"dry_multiplier": -1},
        {"dry_base": 0.5},
        {"dry_allowed_length": 0},
        {"dry_penalty_last_n": -2},
        {"dry_sequence_breakers": [""]},
        {"dry_sequence_breakers": ["x"] * 17},
        {"dry_sequence_breakers": ["y" * 21]},
    ):
        response = httpx.post(
            f"{brain.url}/v1/completions", headers=brain.headers(), json={"prompt": prompt, "max_tokens": 4, **bad}
        )
        assert response.status_code == 422 and next(iter(bad)) in response.text, (bad, response.text)


async def test_the_community_model_is_served_with_the_live_community_adapter(tmp_path: Path, tiny_model_dir: Path):
    registry = tmp_path / "registry"
    with running_brain(tmp_path, tiny_model_dir, trainer={"registry_dir": str(registry)}) as brain:
        client = openai.AsyncOpenAI(base_url=f"{brain.url}/v1", api_key=brain.api_key, max_retries=0)

        async def complete(model: str) -> str:
            reply = await client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0)
            return reply.choices[0].text

        with pytest.raises(openai.NotFoundError, match="No community adapter is live"):
            await complete("community")
        base = await complete("default")

        make_adapter(tiny_model_dir, registry, COMMUNITY, 1, seed=3, base=str(tiny_model_dir))
        store = Store(connect(brain.redis.url))
        await publish(store, COMMUNITY, 1)
        await store.close()

        async def listed() -> bool:
            return "community" in [m.id async for m in client.models.list()]

        await eventually(listed, "the community adapter is listed")
        assert await complete("community") != base, "the adapter changes the model's answer"
        assert await complete("default") == base, "other names keep the base model"
        await client.close()
