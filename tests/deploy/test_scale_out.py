"""Past one machine: brain replicas share Redis, and Redis itself can be a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.client import BrainClient
from brain.api_models import ChatRequest, UserRef
from brain.redis_local import LocalRedis, free_port
from brain.registry_records import ReloadEvent
from brain.service.app import create_app
from brain.service.embedded import serve_in_thread
from brain.settings import Secrets
from brain.store import Store
from brain.store.client import connect
from tests.deploy.redis_cluster import LocalRedisCluster
from tests.support.brain_server import BrainHandle, _wait_ready, brain_settings, running_brain

# short greedy replies: the tiny model says nothing useful, and long replies only cost time
SHORT_GREEDY = {"temperature": 0, "max_new_tokens": 12}
ROOMY_MEMORY = {"max_turns": 20, "max_tokens": 8000}


def chat(text: str, user: str = "42", chat_id: str = "c1") -> ChatRequest:
    return ChatRequest(
        platform="telegram", user_id=user, chat_id=chat_id, text=text, display_name="Ann", sampling=SHORT_GREEDY
    )


async def test_two_brains_behind_one_redis_serve_one_conversation_alternately(
    tmp_path: Path, tiny_model_dir: Path, redis_server: LocalRedis
) -> None:
    texts = ["hello there", "my name is Ann", "what is my name?", "tell me a story", "thank you"]
    with (
        running_brain(tmp_path / "a", tiny_model_dir, redis=redis_server, memory=ROOMY_MEMORY) as a,
        running_brain(tmp_path / "b", tiny_model_dir, redis=redis_server, memory=ROOMY_MEMORY) as b,
    ):
        clients = [BrainClient(a.url, a.api_key, retries=0), BrainClient(b.url, b.api_key, retries=0)]
        try:
            replies = []
            for i, text in enumerate(texts):
                replies.append((await clients[i % 2].chat(chat(text))).reply)
            # the same conversation held by one brain alone: each replica saw every earlier turn
            alone = [(await clients[0].chat(chat(text, user="alone"))).reply for text in texts]
            assert replies == alone

            expected = [turn for pair in zip(texts, replies, strict=True) for turn in pair]
            for client in clients:
                memory = await client.memory(UserRef(platform="telegram", user_id="42"), "c1")
                assert [t.text for t in memory.turns] == expected
                assert [t.role for t in memory.turns] == ["user", "assistant"] * len(texts)
        finally:
            for client in clients:
                await client.aclose()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(tmp_path / "cluster").start()
    yield cluster
    cluster.stop()


@contextmanager
def brain_on_cluster(cluster: LocalRedisCluster, model_dir: Path) -> Iterator[BrainHandle]:
    settings = brain_settings(cluster.url, model_dir, redis={"cluster": True}, memory=ROOMY_MEMORY)
    settings.secrets = Secrets(api_key="test-key")
    app = create_app(settings)
    with serve_in_thread(app, free_port()) as url:
        handle = BrainHandle(url=url, api_key="test-key", redis=cluster, settings=settings, app=app)  # type: ignore[arg-type]
        _wait_ready(handle)
        yield handle


async def test_a_brain_on_a_redis_cluster_chats_exports_and_forgets(
    redis_cluster: LocalRedisCluster, tiny_model_dir: Path
) -> None:
    alice = UserRef(platform="telegram", user_id="1001")
    bob = UserRef(platform="discord", user_id="2002")
    with brain_on_cluster(redis_cluster, tiny_model_dir) as brain:
        client = BrainClient(brain.url, brain.api_key, retries=0)
        try:
            assert not (await client.chat(chat("before opting in", user="1001"))).logged
            consent = await client.opt_in(alice)
            assert consent.opted_in
            assert (await client.chat(chat("after opting in", user="1001"))).logged
            await client.chat(chat("in another chat", user="1001", chat_id="c2"))
            group = ChatRequest(
                platform="discord",
                user_id="2002",
                chat_id="g1",
                chat_kind="group",
                text="hi all",
                sampling=SHORT_GREEDY,
            )
            bob_reply = await client.chat(group)

            memory = await client.memory(alice, "c1")
            assert [t.text for t in memory.turns if t.role == "user"] == ["before opting in", "after opting in"]

            export = await client.export(alice)
            assert export.user == "telegram:1001"
            assert set(export.chats) == {"c1", "c2"}
            assert [e.user_text for e in export.log] == ["after opting in", "in another chat"]

            # one user's keys share a hash tag, so they live on one node; others spread over the masters
            alice_keys = [k for k in redis_cluster.keys() if "{telegram:1001}" in k]
            assert len(alice_keys) >= 5
            stats = await client.stats()
            assert stats.users == 2 and stats.opted_in == 1 and stats.log_entries == 2

            forgotten = await client.forget(alice)
            assert forgotten.forgotten and forgotten.deleted_keys >= 5
            # a scan of every master finds nothing of Alice's, and the other user is untouched
            assert [k for k in redis_cluster.keys() if "telegram:1001" in k] == []
            assert (await client.export(alice)).log == []
            assert (await client.memory(bob, "g1", "group")).turns[-1].text == bob_reply.reply
        finally:
            await client.aclose()


async def test_reload_events_reach_a_subscriber_on_a_redis_cluster(redis_cluster: LocalRedisCluster) -> None:
    """Every replica hears a promotion, even when subscribing is its first use of the cluster."""
    subscriber = Store(connect(redis_cluster.url, cluster=True))
    publisher = Store(connect(redis_cluster.url, cluster=True))
    event = ReloadEvent(target="community", version=3, action="promote")
    events = subscriber.registry.reload_events()
    try:
        heard = asyncio.create_task(anext(events))
        for _ in range(100):  # publish until the subscription is in place
            await asyncio.sleep(0.05)
            if heard.done():
                break
            await publisher.registry.publish_reload(event)
        assert await asyncio.wait_for(heard, 5) == event
    finally:
        await events.aclose()
        await subscriber.close()
        await publisher.close()
