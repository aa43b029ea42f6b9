"""Through the brain: a member's message is served from the prefix cache beyond the persona's system prompt only
for that member, so no one learns from the speed of a reply whether someone else sent the same text."""

from __future__ import annotations

import httpx

LONG = " ".join(f"word{i}" for i in range(60))


def test_a_second_members_identical_prompt_reuses_only_the_system_prompt(brain):
    engine = brain.runtime.backend.engine
    with httpx.Client(base_url=brain.url, headers=brain.headers(), timeout=120) as http:

        def send(user: str) -> int:
            before = engine.reused_tokens
            body = {"platform": "telegram", "user_id": user, "chat_id": f"dm{user}", "text": LONG,
                    "sampling": {"temperature": 0, "max_new_tokens": 2}}  # fmt: skip
            assert http.post("/v1/chat", json=body).status_code == 200
            return engine.reused_tokens - before

        send("1")
        other = send("2")
        again = send("1")  # the same member's next message: their previous prompt, then more
        persona = http.get("/v1/users/telegram/2/persona").json()["system_prompt"]
        tokenizer = brain.runtime.tokenizer
        system = tokenizer.apply_chat_template([{"role": "system", "content": persona}], tokenize=False)
        assert other <= len(tokenizer(system, add_special_tokens=False)["input_ids"])
        assert other > 0  # the persona's system prompt is still shared, by design
        assert again > other + 40  # the member's own words, reused for them


def test_the_openai_routes_next_message_reuses_its_conversation_so_far(brain):
    """The stateless route's client sends the whole history each time: its earlier prompt is served from the cache."""
    engine = brain.runtime.backend.engine
    with httpx.Client(base_url=brain.url, headers=brain.headers(), timeout=120) as http:

        def send(messages: list[dict[str, str]]) -> tuple[str, int]:
            before = engine.reused_tokens
            body = {"model": "default", "messages": messages, "max_tokens": 4, "temperature": 0}
            response = http.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            return response.json()["choices"][0]["message"]["content"], engine.reused_tokens - before

        history = [{"role": "user", "content": LONG}]
        reply, _ = send(history)
        _, reused = send([*history, {"role": "assistant", "content": reply}, {"role": "user", "content": "And?"}])

        assert reused > 60, "the first message's words came from the cache, not a new prefill"
