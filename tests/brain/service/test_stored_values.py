"""Anything stored is exactly what the read side accepts: a value that would not read back is refused (4xx) before
anything is written, and a stored value that no longer reads back (an older version's, a damaged one) is said in
the log and skipped, never a 500 for every member who reads it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import redis

from brain.store import keys
from tests.brain.service.test_hardening import keys as dump_keys

ANN = {"platform": "telegram", "user_id": "1", "chat_id": "g1", "chat_kind": "group"}
PERSONA = "/v1/users/telegram/1/persona"


def card(**data: str) -> dict:
    return {"spec": "chara_card_v2", "data": {"name": "Captain", "description": "a captain", **data}}


@pytest.fixture
def http(brain) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=brain.url, headers=brain.headers(), timeout=60) as client:
        yield client


@pytest.fixture
def db(brain) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(brain.redis.url, decode_responses=True)
    yield client
    client.close()


def chat(http: httpx.Client, text: str = "hello", **ref: str) -> httpx.Response:
    body = {**ANN, **ref, "text": text, "sampling": {"temperature": 0, "max_new_tokens": 4}}
    return http.post("/v1/chat", json=body)


@pytest.mark.parametrize(
    ("persona", "status", "said"),
    [
        ({"card": card(first_mes="x" * 1200)}, 413, "at most 1000"),  # the issue's
        ({"card": card(description="y" * 9000)}, 413, "at most 8000"),
        ({"custom": "z" * 9000}, 413, "at most 8000"),  # not named: a custom text the read side would refuse
    ],
)
def test_a_persona_that_would_not_read_back_is_refused_before_anything_is_written(brain, http, persona, status, said):
    brain.settings.limits.max_persona_chars = 20_000  # an operator's generous limit must not let it through
    before = dump_keys(brain)
    answer = http.put(PERSONA, json={**ANN, **persona})
    assert answer.status_code == status and said in answer.json()["error"]["message"], answer.text
    assert dump_keys(brain) == before
    assert chat(http).status_code == 200


@pytest.mark.parametrize("name", ["_evil", "__", "-_-x"])
def test_a_card_whose_name_is_not_a_persona_name_is_stored_under_one_that_is(http, name):
    answer = http.put(PERSONA, json={**ANN, "card": card(name=name)})
    assert answer.status_code == 200, answer.text
    stored = answer.json()["name"]
    assert stored[0].isalnum()
    assert http.get(PERSONA, params={"chat_id": "g1", "chat_kind": "group"}).json()["name"] == stored
    assert chat(http).status_code == 200


def test_a_stored_persona_that_no_longer_reads_back_is_skipped_for_every_member(http, db, caplog):
    """As an older version could have left it: every member of the group still chats, with the default persona."""
    broken = {"name": "_evil", "custom": True, "system_prompt": "p", "greeting": "g" * 1200, "author": "telegram:1"}
    db.set(keys.chat_persona("telegram", "g1"), json.dumps(broken))
    db.hset(keys.profile("telegram:2"), mapping={"since": "1", "persona": "{not json"})
    with caplog.at_level(logging.ERROR, logger="brain"):
        for member in ("1", "2", "3"):
            assert chat(http, user_id=member).status_code == 200
            state = http.get(f"/v1/users/telegram/{member}/persona", params={"chat_id": "g1", "chat_kind": "group"})
            assert state.status_code == 200 and state.json()["name"] == "assistant"
        assert chat(http, user_id="2", chat_id="d2", chat_kind="direct").status_code == 200
        direct = http.get("/v1/users/telegram/2/persona")
        assert direct.status_code == 200 and direct.json()["name"] == "assistant"
    assert "a stored persona was skipped" in caplog.text and "a stored persona was skipped: not JSON" in caplog.text


def test_stored_facts_and_turns_that_no_longer_read_back_are_skipped(http, db, caplog):
    """Not named in the issue: the same rule for a member's facts and memory turns."""
    pinned = http.post("/v1/users/telegram/1/facts", json={**ANN, "chat_kind": "direct", "chat_id": "d1",
                                                           "text": "I live in Lyon"})  # fmt: skip
    assert pinned.status_code == 201
    db.rpush(keys.facts("telegram:1"), json.dumps({"id": "nothex!", "text": 5}), "[]", "{")
    db.rpush(keys.turns("telegram:1", "d1"), json.dumps({"role": "wizard", "text": "x", "ts": 1}), "7")
    with caplog.at_level(logging.ERROR, logger="brain"):
        listed = http.get("/v1/users/telegram/1/facts", params={"chat_id": "d1"})
        assert listed.status_code == 200 and [f["text"] for f in listed.json()["facts"]] == ["I live in Lyon"]
        assert chat(http, chat_id="d1", chat_kind="direct").status_code == 200
        assert http.get("/v1/users/telegram/1/chats/d1/memory").status_code == 200
        assert http.get("/v1/users/telegram/1/export").status_code == 200
    assert "a stored fact was skipped" in caplog.text and "a stored memory turn was skipped" in caplog.text
