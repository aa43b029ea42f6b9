"""Redis down: 503 with a clear message and a failing /readyz; Redis back: served again, no restart."""

from __future__ import annotations

import httpx

BODY = {
    "platform": "telegram",
    "user_id": "8",
    "chat_id": "8",
    "text": "hello",
    "sampling": {"max_new_tokens": 4},
}


def test_brain_survives_a_redis_restart(brain):
    with httpx.Client(base_url=brain.url, headers=brain.headers(), timeout=60) as http:
        assert http.post("/v1/chat", json=BODY).status_code == 200
        brain.redis.kill()
        down = http.post("/v1/chat", json=BODY)
        assert down.status_code == 503
        assert "Redis" in down.json()["error"]["message"] and down.json()["error"]["code"] == "storage_unavailable"
        assert http.get("/readyz").status_code == 503
        assert http.post("/v1/users/telegram/8/optin").status_code == 503

        brain.redis.start()  # same port, same data directory (AOF)
        again = http.post("/v1/chat", json=BODY)
        assert again.status_code == 200, again.text
        assert http.get("/readyz").status_code == 200
        memory = http.get("/v1/users/telegram/8/chats/8/memory").json()
        assert [t["text"] for t in memory["turns"] if t["role"] == "user"] == ["hello", "hello"]


async def test_every_pooled_connection_recovers_after_a_restart(brain):
    """Concurrent requests hold many pooled connections; after a restart each of them is dead, and the first
    requests after it must still be served, not refused because they drew a dead connection."""
    import asyncio

    async with httpx.AsyncClient(base_url=brain.url, headers=brain.headers(), timeout=60) as http:

        async def burst() -> list[int]:
            paths = [f"/v1/users/telegram/{n}/consent" for n in range(16)]
            return [r.status_code for r in await asyncio.gather(*(http.get(path) for path in paths))]

        assert await burst() == [200] * 16
        brain.redis.kill()
        brain.redis.start()
        assert await burst() == [200] * 16
