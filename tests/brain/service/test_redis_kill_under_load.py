"""Redis killed (kill -9) while members chat, twice, with appendfsync everysec (the deployed setting) and always:
every turn the brain acknowledged (200) is in the member's memory afterwards. A process crash loses nothing either
way (Redis writes the append-only file before it answers); what `everysec` can lose is the last second on a power
loss, which no test here can cause (deploy/README.md, "Redis persistence"). bench/soak.py runs the long version."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis

from tests.support.eventually import eventually

MEMBERS = 8


@pytest.mark.parametrize("fsync", ["everysec", "always"])
async def test_no_acknowledged_turn_is_lost_when_redis_is_killed_under_load(brain, fsync: str) -> None:
    acked: list[tuple[str, str, str]] = []  # (member, chat, text) answered 200
    done = asyncio.Event()

    def configure() -> None:
        with redis.Redis.from_url(brain.redis.url) as r:
            r.config_set("appendfsync", fsync)

    configure()

    async def member(n: int, http: httpx.AsyncClient) -> None:
        turn = 0
        while not done.is_set():
            turn += 1
            chat, text = f"{n}-{turn}", f"message {turn} of member {n}"
            body = {"platform": "telegram", "user_id": str(n), "chat_id": chat, "text": text,
                    "sampling": {"max_new_tokens": 2}}  # fmt: skip
            try:
                reply = await http.post("/v1/chat", json=body)
            except httpx.HTTPError:
                continue
            if reply.status_code == 200:
                acked.append((str(n), chat, text))
            else:
                await asyncio.sleep(0.05)  # 503 while Redis is down: try again, as a bot does

    async with httpx.AsyncClient(base_url=brain.url, headers=brain.headers(), timeout=60) as http:
        members = [asyncio.create_task(member(n, http)) for n in range(1, MEMBERS + 1)]
        for kill in range(2):
            await eventually(lambda kill=kill: len(acked) >= (kill + 1) * 12, "members were answered")
            await asyncio.to_thread(brain.redis.kill)
            await asyncio.to_thread(brain.redis.start)  # same port and data directory: the AOF is read back
            await asyncio.to_thread(configure)
        await eventually(lambda: len(acked) >= 36, "members were answered after the kills")
        done.set()
        await asyncio.gather(*members)

        lost = []
        for user, chat, text in acked:
            memory = (await http.get(f"/v1/users/telegram/{user}/chats/{chat}/memory")).json()
            if text not in [t["text"] for t in memory["turns"]]:
                lost.append((user, chat, text))
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged turns lost"
