"""A /forget on a Redis Cluster: the user's group personas live in other slots than the user, and every node
keeps an append-only file of its own; both are reached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brain.store import Store
from brain.store.client import connect
from tests.deploy.redis_cluster import LocalRedisCluster


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(tmp_path / "cluster").start()
    for port in cluster.ports:  # append-only files of plain commands, to search
        cluster.cli(port, "config", "set", "aof-use-rdb-preamble", "no")
    yield cluster
    cluster.stop()


def files_holding(cluster: LocalRedisCluster, text: bytes) -> list[Path]:
    return [path for path in cluster.directory.rglob("*.aof") if text in path.read_bytes()]


async def test_forget_on_a_cluster_reaches_group_personas_in_other_slots_and_every_nodes_files(
    redis_cluster: LocalRedisCluster,
) -> None:
    store = Store(connect(redis_cluster.url, cluster=True))
    ann, bob = "telegram:1", "telegram:2"
    try:
        state = await store.chats.load_state(ann, "telegram", "c1", False)
        await store.chats.record_turn(
            ann, "c1", since=state.since, user_turn={"role": "user", "text": "ANN-CANARY", "tokens": 3},
            assistant_turn={"role": "assistant", "text": "ok", "tokens": 1}, max_turns=10, max_tokens=100,
            ttl_s=600, display_name="Ann", persona="assistant",
        )  # fmt: skip
        for chat in ("g1", "g2", "g3", "g4"):  # group chats spread over the masters' slots
            await store.personas.set_chat("telegram", chat, {"name": "custom", "custom": True,
                                         "system_prompt": f"ANN-CANARY in {chat}"}, author=ann)  # fmt: skip
        await store.personas.set_chat("telegram", "g4", {"name": "pirate", "custom": False}, author=bob)
        assert files_holding(redis_cluster, b"ANN-CANARY")

        await store.forgetting.forget(ann)

        assert [await store.personas.of_chat("telegram", chat) for chat in ("g1", "g2", "g3")] == [None] * 3
        assert await store.personas.of_chat("telegram", "g4") == {"name": "pirate", "custom": False}
        assert not [key for key in redis_cluster.keys() if ann in key]
        assert await store.persistence.forgotten_since_rewrite()
        assert await store.persistence.rewrite()
        assert files_holding(redis_cluster, b"ANN-CANARY") == []
        assert not await store.persistence.forgotten_since_rewrite()
    finally:
        await store.close()
