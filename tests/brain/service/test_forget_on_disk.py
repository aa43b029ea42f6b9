"""After a /forget the brain has Redis rewrite its append-only file soon (redis.rewrite_after_forget_s), so that
what was deleted leaves the disk without waiting for the nightly run: a real redis-server with appendonly yes."""

from __future__ import annotations

from pathlib import Path

import redis

from bot.client import BrainClient
from brain.api_models import ChatRequest, UserRef
from brain.redis_local import LocalRedis
from tests.support.brain_server import running_brain
from tests.support.eventually import eventually

ANN = UserRef(platform="telegram", user_id="31")
CANARY = b"QXDISKCANARY"


def on_disk(server: LocalRedis, text: bytes) -> bool:
    return any(text in path.read_bytes() for path in server.directory.rglob("*") if path.is_file())


async def test_forgotten_words_leave_the_append_only_file_soon_after_the_forget(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    server = LocalRedis(tmp_path / "redis").start()  # appendonly yes, as deployed
    try:
        with redis.Redis.from_url(server.url) as r:  # plain commands in the file, to search
            r.config_set("aof-use-rdb-preamble", "no")
        with running_brain(tmp_path, tiny_model_dir, redis=server) as brain:
            brain.runtime.settings.redis.rewrite_after_forget_s = 0.5  # a short debounce for the test
            async with BrainClient(brain.url, brain.api_key, retries=0) as client:
                text = f"my code is {CANARY.decode()}"
                await client.chat(ChatRequest(platform=ANN.platform, user_id=ANN.user_id, chat_id="1", text=text))
                await eventually(lambda: on_disk(server, CANARY), "the message reached the append-only file")
                await client.forget(ANN)
                await client.forget(UserRef(platform="telegram", user_id="32"))  # a burst shares one rewrite
            await eventually(lambda: not on_disk(server, CANARY), "the append-only file was rewritten", timeout=30)
    finally:
        server.stop()
