"""Nights add up: a night's fine-tune continues the target's live adapter (finetune.start_from), or the candidate
an earlier night left because the gate could not yet tell it from live (finetune.carry_unproven); a version that
continued another keeps whom that one learned from, so a /forget of an earlier night's member takes both out
of service, and a live adapter of another shape is not continued."""

from __future__ import annotations

import asyncio
from pathlib import Path

import torch

from brain.adapters import COMMUNITY
from brain.store import Store
from brain.store.client import connect
from brain.store.ids import tombstone_member
from tests.trainer.nightly.helpers import nightly_settings, seed_community
from trainer.core.models import add_lora, load_model
from trainer.nightly.export import MANIFEST
from trainer.nightly.files import write_json
from trainer.nightly.link import RedisLink
from trainer.nightly.lock import TrainerLock
from trainer.nightly.lora import FinetuneJob, continue_adapter
from trainer.nightly.registry import Registry
from trainer.nightly.report import Outcome, RunReport
from trainer.nightly.run import run_nightly
from trainer.nightly.runs import CARRY, Carry, purge_run_data
from trainer.settings import FinetuneSettings

# a margin no candidate can beat (its test perplexity would have to fall below 1): however well a night learns, its
# candidate is ahead of live but kept, as one inside the noise
UNBEATABLE = {"margin": 0.99999}


def community(report: RunReport) -> Outcome:
    return next(o for o in report.targets if o.target == COMMUNITY)


async def leave_and_arrive(redis_url: str, leaving: list[str], first: int) -> None:
    """Members who opt out with their logs deleted, and new ones who answer another way."""
    store = Store(connect(redis_url))
    try:
        for user in leaving:
            await store.profiles.opt_out(user, delete_logs=True)
    finally:
        await store.close()
    await seed_community(redis_url, users=4, first=first, answer="Paris is the capital of France, on the Seine.")


async def forget(redis_url: str, user: str) -> None:
    store = Store(connect(redis_url))
    try:
        await store.forgetting.forget(user)
    finally:
        await store.close()


def test_the_second_night_continues_the_live_adapter_and_keeps_whom_it_learned_from(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    night_one = [f"telegram:{u}" for u in range(100, 104)]
    asyncio.run(seed_community(redis_server.url, users=4, first=100))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path)

    first = community(run_nightly(settings, quiet=True))
    assert first.status == "promoted" and first.version == 1, first.reasons
    assert first.finetune is not None and first.finetune.continued_from is None  # nothing was live: a fresh one

    asyncio.run(leave_and_arrive(redis_server.url, night_one, first=200))
    second = community(run_nightly(settings, quiet=True))

    assert second.finetune is not None and second.finetune.continued_from == "community@1", second.finetune
    assert second.status == "promoted" and second.version == 2, second.reasons
    with RedisLink(redis_server.url) as link:
        registry = Registry(settings.trainer.registry_dir, link)
        learned_from = set(registry.meta(COMMUNITY, 2).user_hashes)
    # tonight's members, and the first night's, whose data is in the weights it went on from
    assert {tombstone_member(u) for u in night_one} <= learned_from
    assert {tombstone_member(f"telegram:{u}") for u in range(200, 204)} <= learned_from

    asyncio.run(forget(redis_server.url, night_one[0]))
    third = run_nightly(settings, quiet=True)

    assert third.purged_community_versions == [1, 2]  # v2 never read her logs, but it carries what v1 learned


def test_a_live_adapter_of_another_shape_is_not_continued(tiny_model_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    live = add_lora(load_model(str(tiny_model_dir), device="cpu").model, FinetuneSettings(r=4, alpha=8))
    live.save_pretrained(tmp_path / "live")
    same_shape = add_lora(load_model(str(tiny_model_dir), device="cpu").model, FinetuneSettings(r=4, alpha=8))
    other_shape = add_lora(load_model(str(tiny_model_dir), device="cpu").model, FinetuneSettings())
    fresh = {k: v.clone() for k, v in other_shape.state_dict().items() if "lora_" in k}

    assert continue_adapter(same_shape, str(tmp_path / "live")) == ""
    reason = continue_adapter(other_shape, str(tmp_path / "live"))

    for key, value in live.state_dict().items():  # continued: the live adapter's weights, B (zero at start) too
        if "lora_" in key:
            assert torch.equal(same_shape.state_dict()[key], value), key
    assert reason == "the live adapter has rank 4 and alpha 8, not rank 16 and alpha 32"
    assert all(torch.equal(other_shape.state_dict()[k], v) for k, v in fresh.items())  # left fresh


def test_a_candidate_kept_for_want_of_evidence_is_gone_on_from_and_keeps_whom_it_learned_from(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    night_one = [f"telegram:{u}" for u in range(100, 104)]
    asyncio.run(seed_community(redis_server.url, users=4, first=100))
    strict = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, evaluation=UNBEATABLE)

    first = community(run_nightly(strict, quiet=True))
    assert first.status == "kept" and first.carried, first.reasons
    assert first.reasons[-1] == "ahead of live inside the noise: the next night goes on from it"
    assert first.scores is not None and first.scores.candidate.test_ppl < first.scores.base.test_ppl

    asyncio.run(leave_and_arrive(redis_server.url, night_one, first=200))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path)
    second_report = run_nightly(settings, quiet=True)
    second = community(second_report)

    first_run = sorted(p.name for p in (tmp_path / "runs").iterdir() if p.name != second_report.run)[0]
    assert second.finetune is not None and second.finetune.continued_from == f"the candidate of run {first_run}"
    assert second.status == "promoted" and second.version == 1, second.reasons
    # the candidate is also what its preference objectives measure from (and what best-of-n draws): the night's policy
    job = FinetuneJob.load(tmp_path / "runs" / second_report.run / "targets" / COMMUNITY / "job.json")
    assert job.reference_dir == str(tmp_path / "runs" / first_run / "targets" / COMMUNITY / "adapter")
    with RedisLink(redis_server.url) as link:
        learned_from = set(Registry(settings.trainer.registry_dir, link).meta(COMMUNITY, 1).user_hashes)
    # the first night's members left before the second night, but their data is in the weights it went on from
    assert {tombstone_member(u) for u in night_one} <= learned_from

    asyncio.run(forget(redis_server.url, night_one[0]))
    third = run_nightly(settings, quiet=True)

    assert third.purged_community_versions == [1]


def test_a_carried_candidate_is_not_gone_on_from_once_another_version_serves(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    asyncio.run(seed_community(redis_server.url, users=4, first=100))
    strict = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, evaluation=UNBEATABLE)
    assert community(run_nightly(strict, quiet=True)).carried
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path)
    # an operator's version goes live meanwhile
    with RedisLink(redis_server.url) as link, TrainerLock(link, ttl_s=30) as lock:
        registry = Registry(settings.trainer.registry_dir, link)
        first_run = next((tmp_path / "runs").iterdir())
        registry.add(COMMUNITY, str(first_run / "targets" / COMMUNITY / "adapter"), base_model=str(tiny_model_dir))
        registry.promote(COMMUNITY, 1, lock=lock)

    second = community(run_nightly(settings, quiet=True))

    assert second.finetune is not None and second.finetune.continued_from == "community@1"


def test_a_run_whose_carried_candidate_learned_from_a_forgotten_member_loses_its_data(
    redis_server, tmp_path: Path
) -> None:
    ann = "telegram:1"
    run = tmp_path / "runs" / "20261201T000000Z-abcd"
    write_json(run / MANIFEST, {"user_hashes": []})  # tonight's export did not hold her: only the weights do
    folder = run / "targets" / COMMUNITY
    (folder / "adapter").mkdir(parents=True)
    write_json(folder / CARRY, Carry(live="base", learned_from=[tombstone_member(ann)]).model_dump())
    with RedisLink(redis_server.url) as link:
        assert purge_run_data(tmp_path / "runs", link, keep=5, current=None) == []
        link.call(link.store.forgetting.forget(ann))
        assert purge_run_data(tmp_path / "runs", link, keep=5, current=None) == [run.name]
    assert not (folder / "adapter").exists()
