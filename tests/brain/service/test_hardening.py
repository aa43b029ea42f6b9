"""One member's request never hurts another's: bad values are refused before any work and store nothing,
healthy requests beside them get their usual replies, every slot is given back, and slow or huge requests
are cut off while the brain keeps answering."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from tests.support.brain_server import BrainHandle, running_brain
from tests.support.eventually import eventually

CHAT = {"platform": "telegram", "user_id": "7", "chat_id": "7", "text": "hi", "sampling": {"temperature": 0}}
JSON = {"Content-Type": "application/json"}
OAI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
# each refused on every route that takes it, with 4xx, before anything is stored
BAD_CHATS = [
    ({**CHAT, "sampling": {"temperature": 1e-30}}, "temperature"),
    ({**CHAT, "sampling": {"top_k": 10**30}}, "top_k"),
    ({**CHAT, "sampling": {"max_new_tokens": -1}}, "max_new_tokens"),
    ({**CHAT, "sampling": {"mystery": 1}}, "mystery"),
    ({**CHAT, "text": "poison \udfff"}, "Unicode"),
    ({**CHAT, "display_name": "\ud800"}, "Unicode"),
    ({**CHAT, "context": [{"author": "x", "text": "\udfff"}]}, "Unicode"),
    ({**CHAT, "chat_id": "7\n"}, "chat_id"),
]
BAD_COMPLETIONS = [
    ({**OAI, "seed": 2**64}, "seed"),
    ({**OAI, "seed": -1}, "seed"),
    ({**OAI, "temperature": 1e-30}, "temperature"),
    ({**OAI, "stop": [""]}, "stop string"),
    ({**OAI, "stop": ["x"] * 17}, "stop strings"),
    ({**OAI, "stop": "y" * 129}, "stop string"),
    ({**OAI, "messages": [{"role": "user", "content": "\udfff"}]}, "Unicode"),
    ({**OAI, "max_tokens": 0}, "max_tokens"),
]


def keys(handle: BrainHandle) -> dict[str, Any]:
    """Every key with its type and size, to show that a refused request changed nothing (counters included)."""
    r = redis.Redis.from_url(handle.redis.url, decode_responses=True)
    return {key: (r.type(key), r.dump(key)) for key in r.keys("*")}


def raw_json(payload: dict[str, Any]) -> bytes:
    # json.dumps writes a lone surrogate as the escape \udfff, exactly as a hostile client would send it
    return json.dumps(payload).encode()


@pytest.fixture
def http(brain):
    with httpx.Client(base_url=brain.url, headers=brain.headers(), timeout=60) as c:
        yield c


@pytest.mark.parametrize(("body", "phrase"), BAD_CHATS)
def test_bad_chat_values_are_refused_before_any_work(brain, http, body, phrase):
    before = keys(brain)
    response = http.post("/v1/chat", content=raw_json(body), headers=JSON)
    assert response.status_code == 422, response.text
    assert phrase.lower() in response.json()["error"]["message"].lower()
    assert keys(brain) == before


@pytest.mark.parametrize(("body", "phrase"), BAD_COMPLETIONS)
def test_bad_completion_values_are_refused_before_any_work(brain, http, body, phrase):
    for route, payload in (("/v1/chat/completions", body), ("/v1/completions", _as_completion(body))):
        response = http.post(route, content=raw_json(payload), headers=JSON)
        assert response.status_code == 422, (route, response.text)
        assert phrase.lower() in response.json()["error"]["message"].lower()
    assert brain.runtime.admission.in_use == 0


def _as_completion(body: dict[str, Any]) -> dict[str, Any]:
    text = body["messages"][0]["content"]
    rest = {k: v for k, v in body.items() if k != "messages"}
    return {**rest, "prompt": text}


def test_persona_poison_is_refused_and_nothing_is_stored(brain, http):
    before = keys(brain)
    ref = {"platform": "telegram", "user_id": "7", "chat_id": "g1", "chat_kind": "group"}
    for body in (
        {**ref, "custom": "a pirate \udfff"},
        {**ref, "card": {"spec": "chara_card_v2", "data": {"name": "Bad\udfff", "description": "x"}}},
    ):
        response = http.put("/v1/users/telegram/7/persona", content=raw_json(body), headers=JSON)
        assert response.status_code == 422 and "unicode" in response.json()["error"]["message"].lower()
    assert keys(brain) == before
    # and the group still chats
    assert http.post("/v1/chat", json={**CHAT, "chat_id": "g1", "chat_kind": "group"}).status_code == 200


def test_a_card_whose_macros_explode_is_refused_before_it_is_expanded(brain, http):
    before = keys(brain)
    card = {
        "spec": "chara_card_v2",
        "data": {"name": "N" * 100, "description": "{{char}}" * 3000, "system_prompt": "{{original}}" * 1500},
    }
    body = {"platform": "telegram", "user_id": "7", "chat_id": "7", "card": card}
    response = http.put("/v1/users/telegram/7/persona", json=body)
    assert response.status_code == 413 and "would be" in response.json()["error"]["message"]
    too_big = {**body, "card": {"spec": "chara_card_v2", "data": {"name": "n", "description": "d" * 70_000}}}
    response = http.put("/v1/users/telegram/7/persona", json=too_big)
    assert response.status_code == 422 and "larger than" in response.json()["error"]["message"]
    assert keys(brain) == before


def test_path_ids_must_match_as_a_whole(brain, http):
    for path in (
        "/v1/users/telegram/7%0A/consent",
        "/v1/users/telegram%0A/7/optin",
        "/v1/users/telegram/7/chats/c%0A/memory",
    ):
        response = http.request("POST" if path.endswith("optin") else "GET", path)
        assert response.status_code == 422, path
    assert keys(brain) == {}


async def test_healthy_streams_keep_their_greedy_replies_beside_refused_requests(brain):
    solo: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=brain.url, headers=brain.headers(), timeout=60) as client:
        for user in ("a", "b", "c"):
            reply = await client.post("/v1/chat", json={**CHAT, "user_id": user, "chat_id": "solo" + user})
            solo[user] = reply.json()["reply"]

        async def healthy(user: str) -> str:
            text, final = "", None
            body = {**CHAT, "user_id": user, "chat_id": "solo" + user + "2", "stream": True}
            async with client.stream("POST", "/v1/chat", json=body) as response:
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "delta":
                        text += json.loads(line[5:])["delta"]
                    elif line.startswith("data:") and event == "done":
                        final = json.loads(line[5:])["reply"]
            assert final is not None, "the stream ended without its done event"
            return final

        async def hostile(body: dict[str, Any], route: str) -> int:
            response = await client.post(route, content=raw_json(body), headers=JSON)
            return response.status_code

        attacks = [hostile(body, "/v1/chat") for body, _ in BAD_CHATS]
        attacks += [hostile(body, "/v1/chat/completions") for body, _ in BAD_COMPLETIONS]
        results = await asyncio.gather(*(healthy(u) for u in solo), *attacks)
    replies, statuses = results[: len(solo)], results[len(solo) :]
    assert dict(zip(solo, replies, strict=True)) == solo
    assert all(400 <= status < 500 for status in statuses), statuses
    # a stream gives its slot back once its response has ended on the server, a moment after the client read it
    await eventually(lambda: brain.runtime.admission.in_use == 0, "every slot was given back")


@contextmanager
def engine_paused(handle: BrainHandle) -> Iterator[None]:
    """Hold the engine's worker between two steps, so that admitted generations stay in flight."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(60)

    thread = threading.Thread(
        target=asyncio.run, args=(handle.runtime.backend.engine.between_steps(hold),), daemon=True
    )
    thread.start()
    assert entered.wait(10), "the engine never paused"
    try:
        yield
    finally:
        release.set()
        thread.join(10)


async def test_at_most_max_concurrent_generations_are_admitted_on_every_route(tmp_path, tiny_model_dir):
    with running_brain(tmp_path, tiny_model_dir, limits={"max_concurrent": 4}) as b:
        r = redis.Redis.from_url(b.redis.url, decode_responses=True)
        requests = [("/v1/chat", {**CHAT, "user_id": str(n), "chat_id": str(n)}) for n in range(20)]
        requests += [("/v1/chat/completions", OAI)] * 5 + [("/v1/completions", {"prompt": "hi"})] * 5
        async with httpx.AsyncClient(base_url=b.url, headers=b.headers(), timeout=60) as client:
            with engine_paused(b):
                tasks = [asyncio.create_task(client.post(route, json=body)) for route, body in requests]
                await eventually(lambda: sum(t.done() for t in tasks) == len(tasks) - 4, "all but 4 were answered")
                early = [t.result() for t in tasks if t.done()]
                assert b.runtime.admission.in_use == 4
            responses = await asyncio.gather(*tasks)
        assert all(response.status_code == 503 for response in early)
        assert [response.status_code for response in responses].count(200) == 4
        for response in early:
            assert response.headers["Retry-After"] == "1"
            assert "limit of concurrent requests" in response.json()["error"]["message"]
        for (route, body), response in zip(requests, responses, strict=True):
            if route == "/v1/chat":  # a refused chat left nothing, not even a rate count
                user_keys = r.keys(f"*{{telegram:{body['user_id']}}}*")
                assert bool(user_keys) == (response.status_code == 200), (body["user_id"], user_keys)
        await eventually(lambda: b.runtime.admission.in_use == 0, "every slot was given back")


async def test_a_client_that_leaves_cancels_its_generation_and_stores_nothing(tmp_path, tiny_model_dir):
    with running_brain(tmp_path, tiny_model_dir, model={"max_new_tokens": 400}) as b:
        r = redis.Redis.from_url(b.redis.url, decode_responses=True)
        body = {**CHAT, "sampling": {"temperature": 0, "max_new_tokens": 400}}
        async with httpx.AsyncClient(base_url=b.url, headers=b.headers(), timeout=60) as client:
            # non-streaming: the client gives up while the engine is held, then the engine goes on
            with engine_paused(b):
                with pytest.raises(httpx.ReadTimeout):
                    await client.post("/v1/chat", json=body, timeout=1.0)
            await eventually(lambda: b.runtime.admission.in_use == 0, "the slot was given back")
            await eventually(lambda: b.runtime.backend.active == 0, "the generation was cancelled")
            # streaming: the client reads one delta, then leaves
            async with client.stream("POST", "/v1/chat", json={**body, "stream": True}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        break
            await eventually(lambda: b.runtime.admission.in_use == 0, "the stream's slot was given back")
            await eventually(lambda: b.runtime.backend.active == 0, "the stream's generation was cancelled")
        assert r.keys("oc:turns:*") == []


def test_a_huge_body_is_refused_while_health_answers_at_once(brain):
    huge = b'{"text": "' + b"x" * 5_000_000 + b'"}'
    result: dict[str, Any] = {}

    def send() -> None:
        result["response"] = httpx.post(
            f"{brain.url}/v1/chat", content=huge, headers={**brain.headers(), "Content-Type": "application/json"}
        )

    sender = threading.Thread(target=send)
    sender.start()
    health = [httpx.get(f"{brain.url}/healthz", timeout=5).status_code for _ in range(5)]
    sender.join(30)
    assert health == [200] * 5
    assert result["response"].status_code == 413
    assert "larger than" in result["response"].json()["error"]["message"]


def test_a_chunked_body_past_the_cap_is_refused(brain):
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    response = httpx.post(f"{brain.url}/v1/chat", content=chunks(), headers=brain.headers())
    assert response.status_code == 413


def test_slow_senders_are_cut_off(tmp_path, tiny_model_dir):
    limits = {"header_timeout_s": 0.5, "body_timeout_s": 0.5}
    with running_brain(tmp_path, tiny_model_dir, limits=limits) as b:
        port = int(b.url.rsplit(":", 1)[1])
        # headers that never finish: the connection is closed
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert sock.recv(1024) == b""
        # a body that never finishes: 408
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = f"POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {b.api_key}\r\n"
            sock.sendall((head + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode())
            answer = b"".join(iter(lambda: sock.recv(4096), b"")).decode()
            assert answer.startswith("HTTP/1.1 408") and "did not arrive in time" in answer
        assert httpx.get(f"{b.url}/healthz").status_code == 200


def test_docs_need_the_key_and_nothing_shows_a_path(brain, http, tiny_model_dir):
    assert httpx.get(f"{brain.url}/openapi.json").status_code == 401
    assert httpx.get(f"{brain.url}/docs").status_code == 401
    document = http.get("/openapi.json").json()
    for text in (httpx.get(f"{brain.url}/readyz").text, http.get("/v1/models").text, http.get("/v1/stats").text):
        assert str(tiny_model_dir) not in text and tiny_model_dir.name in text
    chat = document["paths"]["/v1/chat"]["post"]["responses"]
    assert {"200", "400", "401", "408", "413", "422", "429", "500", "503"} <= set(chat)
    assert "text/event-stream" in chat["200"]["content"]
    consent = document["paths"]["/v1/users/{platform}/{user_id}/consent"]["get"]["parameters"]
    assert {p["name"]: p["schema"].get("pattern") for p in consent} == {
        "platform": r"^[a-z][a-z0-9_-]{0,31}$",
        "user_id": r"^[A-Za-z0-9_.:@-]{1,128}$",
    }


def test_public_docs_is_a_setting(tmp_path, tiny_model_dir):
    with running_brain(tmp_path, tiny_model_dir, brain={"public_docs": True}) as b:
        assert httpx.get(f"{b.url}/openapi.json").status_code == 200
        assert httpx.get(f"{b.url}/v1/personas").status_code == 401
