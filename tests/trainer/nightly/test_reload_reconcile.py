"""A promotion reaches every brain even when its reload event never does: the brain re-reads the registry on a
timer. Here Redis refuses the trainer PUBLISH, so the run stops between writing the live record and telling
the brains, the same state a trainer killed at that point leaves behind."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import redis

from bot.client import BrainClient
from brain.adapters import COMMUNITY
from brain.api_models import ChatRequest
from tests.support.brain_server import running_brain
from tests.support.eventually import eventually
from tests.trainer.nightly.helpers import QUESTIONS, nightly_settings, seed_community
from trainer.nightly.link import RedisLink
from trainer.nightly.registry import Registry
from trainer.nightly.run import run_nightly


async def adapter_served(client: BrainClient, user_id: int) -> str | None:
    """The adapter that answers a user (a new one each time: the rate limit counts per user)."""
    request = ChatRequest(platform="telegram", user_id=str(user_id), chat_id="c1", text=QUESTIONS[0])
    return (await client.chat(request)).adapter


async def test_a_promotion_whose_reload_event_is_never_sent_still_reaches_the_brain(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    trainer = {"registry_dir": str(tmp_path / "registry"), "reload_reconcile_s": 0.5}
    with running_brain(tmp_path, tiny_model_dir, trainer=trainer) as brain:
        with redis.Redis.from_url(brain.redis.url) as admin:  # a trainer that may do anything but PUBLISH
            admin.acl_setuser(
                "trainer", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all", "-publish"]
            )
        await seed_community(brain.redis.url)
        as_trainer = brain.redis.url.replace("redis://", "redis://trainer:pw@")
        settings = nightly_settings(as_trainer, tiny_model_dir, tmp_path)

        async with BrainClient(brain.url, brain.api_key) as client:
            assert await adapter_served(client, 0) is None
            report = await asyncio.to_thread(run_nightly, settings, quiet=True)
            community = report.outcome(COMMUNITY)
            assert community.status == "promoted" and community.version == 1
            with RedisLink(brain.redis.url) as link:
                assert Registry(settings.trainer.registry_dir, link).live_version(COMMUNITY) == 1

            users = itertools.count(1)
            served = await eventually(  # no event comes; the brain's timer finds the record
                lambda: adapter_served(client, next(users)), "the brain found the promotion on its timer"
            )
    assert served == "community@1"
