"""Bad input gets a clear 4xx JSON error and stores nothing; a wrong or missing key gets 401."""

from __future__ import annotations

import httpx
import pytest
import redis

from tests.support.brain_server import running_brain

BODY = {"platform": "telegram", "user_id": "7", "chat_id": "7", "text": "hi"}


def stored_keys(url: str) -> set[str]:
    return set(redis.Redis.from_url(url, decode_responses=True).keys("*"))


@pytest.fixture
def http(brain):
    with httpx.Client(base_url=brain.url, headers=brain.headers(), timeout=60) as c:
        yield c


@pytest.mark.parametrize(
    ("body", "status", "code", "phrase"),
    [
        ({**BODY, "text": "   \n "}, 400, "empty_message", "empty"),
        ({**BODY, "text": "x" * 4001}, 413, "message_too_long", "at most 4000"),
        ({**BODY, "platform": "Not A Platform"}, 422, "invalid_request", "platform"),
        ({k: v for k, v in BODY.items() if k != "text"}, 422, "invalid_request", "text"),
        ({**BODY, "sampling": {"temperature": -1}}, 422, "invalid_request", "temperature"),
    ],
)
def test_bad_chat_requests_are_refused_clearly_and_store_nothing(brain, http, body, status, code, phrase):
    before = stored_keys(brain.redis.url)
    response = http.post("/v1/chat", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and phrase in error["message"]
    assert stored_keys(brain.redis.url) == before  # the rate counter included


def test_malformed_json_is_422(http):
    response = http.post("/v1/chat", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "not valid" in response.json()["error"]["message"]


def test_missing_or_wrong_key_is_401(brain):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(f"{brain.url}/v1/chat", json=BODY, headers=headers)
        assert response.status_code == 401
        assert "API key" in response.json()["error"]["message"]
    assert httpx.get(f"{brain.url}/healthz").status_code == 200


def test_unknown_persona_is_404(http):
    body = {"platform": "telegram", "user_id": "7", "chat_id": "7", "preset": "nobody"}
    response = http.put("/v1/users/telegram/7/persona", json=body)
    assert response.status_code == 404 and "no persona called 'nobody'" in response.json()["error"]["message"]


def test_custom_persona_over_the_limit_is_refused(http):
    body = {"platform": "telegram", "user_id": "7", "chat_id": "7", "custom": "y" * 1501}
    response = http.put("/v1/users/telegram/7/persona", json=body)
    assert response.status_code == 413 and "at most 1500" in response.json()["error"]["message"]


def test_rate_limit_answers_429_with_retry_after(tmp_path, tiny_model_dir):
    with running_brain(tmp_path, tiny_model_dir, limits={"rate_per_minute": 2}) as b:
        with httpx.Client(base_url=b.url, headers=b.headers(), timeout=60) as http:
            body = {**BODY, "sampling": {"max_new_tokens": 2}}
            assert http.post("/v1/chat", json=body).status_code == 200
            assert http.post("/v1/chat", json=body).status_code == 200
            turns_before = redis.Redis.from_url(b.redis.url).llen("oc:turns:{telegram:7}:7")
            limited = http.post("/v1/chat", json=body)
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert "Too many messages" in limited.json()["error"]["message"]
            assert redis.Redis.from_url(b.redis.url).llen("oc:turns:{telegram:7}:7") == turns_before


def test_beam_search_cannot_stream(http):
    response = http.post("/v1/chat", json={**BODY, "stream": True, "sampling": {"num_beams": 3}})
    assert response.status_code == 400 and "non-streaming" in response.json()["error"]["message"]


def test_the_concurrency_limit_answers_503_busy(tmp_path, tiny_model_dir):
    overrides = {"limits": {"max_concurrent": 1}, "model": {"max_new_tokens": 400}}
    with running_brain(tmp_path, tiny_model_dir, **overrides) as b:
        with httpx.Client(base_url=b.url, headers=b.headers(), timeout=60) as http:
            long = {**BODY, "stream": True, "sampling": {"max_new_tokens": 400, "temperature": 0}}
            with http.stream("POST", "/v1/chat", json=long) as first:
                lines = first.iter_lines()
                next(lines)  # the first reply is being generated and holds the only slot
                busy = http.post("/v1/chat", json={**BODY, "user_id": "8"})
                assert busy.status_code == 503 and busy.json()["error"]["code"] == "busy"
                assert "Retry-After" in busy.headers
                done = [line for line in lines if line.startswith("data:")][-1]
                assert '"finish_reason":"length"' in done  # it was still generating when refused
            assert http.post("/v1/chat", json={**BODY, "user_id": "9"}).status_code == 200
