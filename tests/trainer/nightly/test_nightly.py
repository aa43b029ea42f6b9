"""A nightly run end to end: it trains, evaluates and promotes; the brain then answers with the adapter;
the gate refuses a bad candidate and says why; rollback goes back; a forgotten user's adapter goes away."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from bot.client import BrainClient
from brain.adapters import COMMUNITY, user_target, version_dir
from brain.api_models import ChatRequest
from brain.registry_records import ReloadEvent
from brain.store import Store
from brain.store.client import connect
from brain.store.ids import tombstone_member
from tests.support.brain_server import running_brain
from tests.support.eventually import eventually
from tests.trainer.nightly.helpers import ANSWER, QUESTIONS, log_turns, nightly_settings, question, seed_community
from trainer.cli import app
from trainer.nightly.export import load_snapshot
from trainer.nightly.link import RedisLink
from trainer.nightly.lock import LockHeldError, TrainerLock
from trainer.nightly.registry import Purged, Registry
from trainer.nightly.report import Outcome, RunReport, read_report
from trainer.nightly.run import run_nightly
from trainer.nightly.runs import run_dirs

GREEDY = {"temperature": 0, "repetition_penalty": 1.0}


def outcome(report: RunReport, target: str = COMMUNITY) -> Outcome:
    return report.outcome(target)


async def ask(client: BrainClient, chat: str) -> object:
    request = ChatRequest(
        platform="telegram", user_id="7", chat_id=chat, text=QUESTIONS[0], sampling={"temperature": 0}
    )
    return await client.chat(request)


def plot_rows(run: Path) -> int:
    """How many targets a run's plot shows: one row of two panels each, 3.2 inches at 110 dpi."""
    from PIL import Image

    with Image.open(run / "report.png") as image:
        return round(image.size[1] / (3.2 * 110))


def on_redis_disk(server, text: bytes) -> bool:
    return any(text in path.read_bytes() for path in server.directory.rglob("*") if path.is_file())


def cli(settings_env: dict[str, str], *args: str) -> object:
    return CliRunner().invoke(app, list(args), env=settings_env, catch_exceptions=False)


def env_for(settings) -> dict[str, str]:
    return {
        "OWNCHAT_REDIS__URL": settings.redis.url,
        "OWNCHAT_MODEL__NAME": settings.model.name,
        "OWNCHAT_TRAINER__REGISTRY_DIR": settings.trainer.registry_dir,
        "OWNCHAT_TRAINER__RUNS_DIR": settings.trainer.runs_dir,
    }


async def test_nightly_promotes_and_the_brain_answers_with_the_new_adapter(tmp_path: Path, tiny_model_dir: Path):
    registry_dir = str(tmp_path / "registry")
    with running_brain(tmp_path, tiny_model_dir, trainer={"registry_dir": registry_dir}) as brain:
        async with BrainClient(brain.url, brain.api_key) as client:
            before = await ask(client, "before")
            await seed_community(brain.redis.url)
            settings = nightly_settings(brain.redis.url, tiny_model_dir, tmp_path, finetune={"max_steps": 60})
            report = await asyncio.to_thread(run_nightly, settings, quiet=True)

            community = outcome(report)
            assert community.status == "promoted" and community.version == 1, community.reasons
            scores = community.scores
            assert scores.candidate.test_ppl < 0.5 * scores.base.test_ppl
            chats = itertools.count()

            async def adapted() -> object:  # a fresh chat each time
                reply = await ask(client, f"after-{next(chats)}")
                return reply if reply.adapter else None

            after = await eventually(adapted, "the brain reloaded on the registry's event and used the adapter")

    assert before.adapter is None and before.reply != ANSWER
    assert after.adapter == "community@1"
    assert after.reply.startswith("The capital of France") and "Paris" in after.reply  # what it was taught
    run = Path(settings.trainer.runs_dir) / report.run
    assert read_report(run).targets[0].status == "promoted"
    assert set(community.seconds) == {"reward model", "fine-tune", "gate"}  # where the night went, for the operator
    assert community.seconds["fine-tune"] > 0 and community.seconds["gate"] > 0
    assert (run / "report.png").stat().st_size > 10_000
    assert (Path(registry_dir) / COMMUNITY / "v1" / "adapter_model.safetensors").is_file()


def test_the_gate_refuses_a_worse_candidate_and_says_why(redis_server, tmp_path: Path, tiny_model_dir: Path):
    asyncio.run(seed_community(redis_server.url))
    good = nightly_settings(redis_server.url, tiny_model_dir, tmp_path)
    assert outcome(run_nightly(good, quiet=True)).status == "promoted"

    # a learning rate that wrecks the model: worse on the test split (on general text the tiny model is no
    # better than chance to begin with; the prose bound's refusal: test_few_likes.py)
    bad = nightly_settings(
        redis_server.url, tiny_model_dir, tmp_path,
        # the fine-tune's own bound off: what reaches the gate is the wrecked model
        finetune={"learning_rate": 30.0, "eval_every": 100, "keep_within_guard": False},
    )  # fmt: skip
    report = run_nightly(bad, quiet=True)

    refused = outcome(report)
    assert refused.status == "kept" and refused.version is None
    assert "does not beat community@1's" in " ".join(refused.reasons)
    with RedisLink(redis_server.url) as link:
        registry = Registry(good.trainer.registry_dir, link)
        assert registry.live_version(COMMUNITY) == 1
        assert registry.versions(COMMUNITY) == [1]


def test_rollback_puts_the_previous_version_live_and_tells_the_brains(
    redis_server, tmp_path: Path, tiny_model_dir: Path
):
    asyncio.run(seed_community(redis_server.url))
    # a second version as good as v1: the night may keep its start (v1's weights) and margin 0 lets it in
    settings = nightly_settings(
        redis_server.url, tiny_model_dir, tmp_path, evaluation={"margin": 0.0}, finetune={"keep_start": True}
    )
    run_nightly(settings, quiet=True)
    assert outcome(run_nightly(settings, quiet=True)).version == 2

    async def rollback_and_listen() -> ReloadEvent:
        store = Store(connect(redis_server.url))
        subscribed = asyncio.Event()

        async def confirmed() -> None:
            subscribed.set()

        events = store.registry.reload_events(on_subscribed=confirmed)
        waiting = asyncio.ensure_future(events.__anext__())
        await eventually(subscribed.is_set, "Redis confirmed the subscription to reload events")
        result = await asyncio.to_thread(cli, env_for(settings), "rollback", "community")
        assert result.exit_code == 0, result.output
        event = await asyncio.wait_for(waiting, 10)
        await events.aclose()
        await store.close()
        return event

    assert asyncio.run(rollback_and_listen()) == ReloadEvent(target=COMMUNITY, version=1, action="rollback")
    status = json.loads(cli(env_for(settings), "status", "--json").output)
    community = status["targets"][COMMUNITY]
    assert community["live"]["version"] == 1
    assert community["versions"] == [1, 2]
    assert [e["action"] for e in community["history"]] == ["rollback", "promote", "promote"]

    assert cli(env_for(settings), "rollback", "community", "base").exit_code == 0
    assert json.loads(cli(env_for(settings), "status", "--json").output)["targets"][COMMUNITY]["live"] is None
    missing = cli(env_for(settings), "rollback", "community", "7")
    assert missing.exit_code == 1 and "has no version 7" in missing.output


def test_a_second_run_waits_for_the_lock(redis_server, tmp_path: Path, tiny_model_dir: Path):
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path)
    with RedisLink(redis_server.url) as link, TrainerLock(link, ttl_s=30):  # another replica's run
        with pytest.raises(LockHeldError):
            run_nightly(settings, quiet=True)
        result = cli(env_for(settings), "nightly")
    assert result.exit_code == 0 and "holds the lock" in result.output
    assert run_dirs(settings.trainer.runs_dir) == [], "nothing was exported"


def test_forget_removes_the_users_adapter_and_their_data_from_later_runs(
    redis_server, tmp_path: Path, tiny_model_dir: Path
):
    ann = "telegram:1"
    with redis.Redis.from_url(redis_server.url) as r:  # an append-only file of plain commands, to search
        r.config_set("aof-use-rdb-preamble", "no")

    async def seed() -> None:
        # the community answers as most members do, in more turns than Ann gives (but fewer each than a member
        # needs for an adapter of their own), so that its adapter learns her way less well than hers does
        await seed_community(redis_server.url, users=3, turns=18)
        store = Store(connect(redis_server.url))
        await store.profiles.opt_in(ann, "2026-11")
        for i in range(30):  # Ann's own way of answering, which her adapter learns
            await log_turns(store, ann, [(question(i), "Paris, of course!")], chat=f"a{i // 3}")
        await store.close()

    asyncio.run(seed())
    # a steadier rate than the other tests' and no early stop: at 3e-2 her adapter's loss spiked and the run
    # stopped at an early step, which lost to the community's on her test split in about 1 run of 5
    steady = {"learning_rate": 1e-2, "patience": 8}
    # the community learns her way too (she is opted in): its perplexity on her test split read 1.03 to 1.21 against
    # her own adapter's 1.01 across machines and precisions, so her adapter needs only to beat it, not by the 2 % a
    # night asks (a refusal by the margin: test_the_gate_refuses_a_worse_candidate_and_says_why); what this test is
    # about is what a /forget takes away
    settings = nightly_settings(
        redis_server.url, tiny_model_dir, tmp_path, min_user_turns=20, finetune=steady, evaluation={"margin": 0.0}
    )
    first = run_nightly(settings, quiet=True)
    assert outcome(first, user_target(ann)).status == "promoted", outcome(first, user_target(ann)).reasons
    assert outcome(first).status == "promoted", outcome(first).reasons
    assert (Path(settings.trainer.registry_dir) / user_target(ann)).is_dir()
    community_v1 = version_dir(settings.trainer.registry_dir, COMMUNITY, 1)
    assert tombstone_member(ann) in json.loads((community_v1 / "meta.json").read_text())["user_hashes"]
    first_run = run_dirs(settings.trainer.runs_dir)[0]
    assert user_target(ann) in (first_run / "report.json").read_text()
    plot_before = plot_rows(first_run)
    assert on_redis_disk(redis_server, b"Paris, of course!")

    async def forget() -> dict:
        store = Store(connect(redis_server.url))
        assert (await store.profiles.get(ann))["adapter_version"] == "1"
        await store.forgetting.forget(ann)
        await store.close()

    asyncio.run(forget())
    second = run_nightly(settings, quiet=True)

    assert second.purged_targets == 1
    assert second.purged_community_versions == [1], "the community version that learned from Ann went too"
    assert not community_v1.exists()
    assert not (Path(settings.trainer.registry_dir) / user_target(ann)).exists()
    assert all(row["user"] != ann for row in load_snapshot(run_dirs(settings.trainer.runs_dir)[-1]))
    assert [o.target for o in second.targets] == [COMMUNITY]
    assert not (run_dirs(settings.trainer.runs_dir)[0] / "export").exists(), "the first run's data went too"
    with RedisLink(redis_server.url) as link:
        registry = Registry(settings.trainer.registry_dir, link)
        assert registry.live(user_target(ann)) is None
        assert registry.live_version(COMMUNITY) != 1
        assert any(e.action == "forget" and e.previous == 1 for e in registry.history(COMMUNITY))

    # what the runs kept names her adapter no more: reports, and the plot drawn again without her panels
    assert second.redacted_reports == [first_run.name]
    for report in Path(settings.trainer.runs_dir).rglob("report.json"):
        assert user_target(ann) not in report.read_text(), report
    assert [o.target for o in read_report(first_run).targets] == [COMMUNITY]
    assert plot_rows(first_run) == plot_before - 1
    # and Redis rewrote its append-only file: her words are gone from its disk too
    assert second.persistence == "rewritten"
    assert not on_redis_disk(redis_server, b"Paris, of course!")


def test_forget_puts_the_newest_community_version_that_never_saw_the_user_back_live(redis_server, tmp_path: Path):
    ann, bob = "telegram:1", "telegram:2"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    with RedisLink(redis_server.url) as link, TrainerLock(link, ttl_s=30) as lock:
        registry = Registry(tmp_path / "registry", link)
        for learned_from in ([bob], [ann, bob], [bob], [ann]):  # v1 live, v2 live, v3 never live, v4 live
            version = registry.add(
                COMMUNITY, adapter, base_model="m", user_hashes=[tombstone_member(u) for u in learned_from]
            )
            if version != 3:
                registry.promote(COMMUNITY, version, lock=lock)
        link.call(link.store.forgetting.forget(ann))

        purged = registry.purge_forgotten(lock=lock)

        assert purged == Purged(targets=[], community_versions=[2, 4])
        assert registry.versions(COMMUNITY) == [1, 3]
        assert registry.live_version(COMMUNITY) == 1, "v3 never passed the gate, so v1 serves"
        assert registry.history(COMMUNITY)[0].action == "forget"
        link.call(link.store.forgetting.forget(bob))
        registry.purge_forgotten(lock=lock)
        assert registry.live(COMMUNITY) is None and registry.versions(COMMUNITY) == []
