"""The contract is exact: what the document allows is what the brain takes, and nothing looser (a boolean or a
float is not a rating, a number is not a yes), with the answers the document names (a 405 with its Allow, a
plain-text 401 on /metrics, a 404 for a model that is not served)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis

from brain.service.app import create_app
from brain.settings import Settings
from tests.brain.service.test_hardening import keys

FEEDBACK = {"platform": "telegram", "user_id": "1", "chat_id": "c1", "turn_id": "0123456789abcdef"}


@pytest.fixture
def http(brain) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=brain.url, headers=brain.headers(), timeout=60) as client:
        yield client


@pytest.mark.parametrize("model", ["../../etc", "gpt-4", "/tmp/model", "default/../x"])
def test_an_unknown_model_name_is_a_404_before_any_work(brain, http, model):
    before = keys(brain)
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/completions", {"prompt": "hi"})):  # fmt: skip
        answer = http.post(path, json={**body, "model": model, "max_tokens": 4})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"
    assert keys(brain) == before
    served = http.get("/v1/models").json()["data"][0]["id"]
    assert http.post("/v1/completions", json={"prompt": "hi", "model": served, "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize("rating", [True, False, 1.0, -1.0, 0.0, "1", None, 2])
def test_a_rating_is_the_integer_minus_one_zero_or_one_only(http, rating):
    answer = http.post("/v1/feedback", json={**FEEDBACK, "rating": rating})
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("flag", [0.0, 1, 0, "true", "yes", None])
def test_optout_delete_logs_is_a_strict_boolean(brain, http, flag):
    http.post("/v1/users/telegram/1/optin")
    before = keys(brain)
    answer = http.post("/v1/users/telegram/1/optout", json={"delete_logs": flag})
    assert answer.status_code == 422, answer.text
    assert keys(brain) == before


@pytest.mark.parametrize(("method", "path"), [("TRACE", "/v1/chat"), ("PUT", "/v1/feedback"), ("DELETE", "/healthz")])
def test_a_refused_method_is_a_405_that_says_what_is_allowed(http, method, path):
    answer = http.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] and method not in answer.headers["allow"]


def test_metrics_without_the_key_is_a_plain_text_401(brain):
    answer = httpx.get(f"{brain.url}/metrics")
    assert answer.status_code == 401 and answer.headers["content-type"].startswith("text/plain")
    assert "API key" in answer.text and answer.headers["www-authenticate"] == "Bearer"


def test_the_document_says_which_requests_the_models_refuse():
    """A request valid by the document is never refused for a rule only the model knew; one it refuses is
    invalid by the document too."""
    import jsonschema

    document = create_app(Settings()).openapi()
    schemas = document["components"]["schemas"]

    def valid(name: str, body: dict) -> bool:
        schema = {**schemas[name], "components": document["components"]}  # where its $refs point
        return jsonschema.Draft202012Validator(schema).is_valid(body)

    ref = {"platform": "telegram", "user_id": "1", "chat_id": "c1"}
    assert valid("FeedbackRequest", {**ref, "rating": 1, "turn_id": "0123456789abcdef"})
    assert valid("FeedbackRequest", {**ref, "rating": 1, "message_id": "55"})
    assert not valid("FeedbackRequest", {**ref, "rating": 1})
    assert not valid("FeedbackRequest", {**ref, "rating": 1, "message_id": "55", "turn_id": "0123456789abcdef"})
    assert not valid("PersonaSet", {**ref})
    assert not valid("PersonaSet", {**ref, "preset": "pirate", "custom": "x"})
    assert not valid("PersonaSet", {**ref, "custom": "   "})
    assert valid("PersonaSet", {**ref, "custom": "  a pirate  "})
    assert not valid("ChatRequest", {**ref})  # no text and no retry
    assert not valid("ChatRequest", {**ref, "retry_of": "last", "retry_message": "5"})
    assert valid("ChatRequest", {**ref, "retry_of": "last"})
    query = document["paths"]["/v1/users/{platform}/{user_id}/persona"]["get"]["parameters"][-1]["schema"]
    assert not jsonschema.Draft202012Validator(query).is_valid({"chat_kind": "group"})
    assert jsonschema.Draft202012Validator(query).is_valid({"chat_kind": "group", "chat_id": "g1"})


def test_a_group_persona_without_its_chat_is_refused_as_the_document_says(http):
    answer = http.get("/v1/users/telegram/1/persona", params={"chat_kind": "group"})
    assert answer.status_code == 400
    assert http.get("/v1/users/telegram/1/persona", params={"chat_kind": "group", "chat_id": "g1"}).status_code == 200


def test_schemathesis_reads_the_persona_query_as_one_object():
    schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
    operation = schema["/v1/users/{platform}/{user_id}/persona"]["GET"]
    assert [p.name for p in operation.query] == ["chat"]
