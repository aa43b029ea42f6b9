"""The official openai client against the brain's /v1/chat/completions."""

from __future__ import annotations

import openai


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
