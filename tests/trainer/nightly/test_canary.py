"""Canary rollout: a candidate that passed the gate first serves a share of members; the next run rolls it
back when members like it significantly less than the live version, or promotes it once it has enough
ratings and is not worse. `trainer status` shows each version's like-rate with its 95 % interval."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from brain.adapters import COMMUNITY
from brain.store import Store
from brain.store.client import connect
from tests.trainer.nightly.helpers import nightly_settings, seed_community
from tests.trainer.nightly.ratings_helpers import rate_version
from trainer.cli import app
from trainer.nightly.canary import judge
from trainer.nightly.link import RedisLink
from trainer.nightly.registry import Registry
from trainer.nightly.run import run_nightly
from trainer.nightly.stats import lower_tail_z, wilson

CANARY = {"share": 0.5, "min_ratings": 20, "level": 0.05}


def rate(redis_url: str, served_by: str | None, likes: int, dislikes: int, first_rater: int) -> None:
    async def go() -> None:
        store = Store(connect(redis_url))
        try:
            await rate_version(store, served_by, likes, dislikes, first_rater=first_rater)
        finally:
            await store.close()

    asyncio.run(go())


def env_for(settings) -> dict[str, str]:
    return {
        "OWNCHAT_REDIS__URL": settings.redis.url,
        "OWNCHAT_MODEL__NAME": settings.model.name,
        "OWNCHAT_TRAINER__REGISTRY_DIR": settings.trainer.registry_dir,
        "OWNCHAT_TRAINER__RUNS_DIR": settings.trainer.runs_dir,
        "OWNCHAT_TRAINER__CANARY__MIN_RATINGS": str(CANARY["min_ratings"]),
    }


def test_a_canary_members_like_less_is_rolled_back_by_the_next_run(redis_server, tmp_path: Path, tiny_model_dir):
    asyncio.run(seed_community(redis_server.url))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, canary=CANARY)
    first = run_nightly(settings, quiet=True)

    started = first.outcome(COMMUNITY)
    assert started.status == "canary" and started.version == 1, started.reasons
    assert "serves 50% of opted-in members as a canary until it has 20 ratings" in " ".join(started.reasons)
    with RedisLink(redis_server.url) as link:
        assert Registry(settings.trainer.registry_dir, link).live(COMMUNITY) is None, "not live for everyone yet"
        record = link.call(link.store.canaries.get(COMMUNITY))
        assert (record.name, record.share, record.min_ratings) == ("community@1", 0.5, 20)

    # members of the canary's share dislike it; the others keep liking the base model
    rate(redis_server.url, "community@1", likes=3, dislikes=9, first_rater=1000)
    rate(redis_server.url, None, likes=10, dislikes=2, first_rater=2000)
    second = run_nightly(settings, quiet=True)

    check = second.canary_check
    assert check is not None and check.action == "rolled back", check
    seen = check.figures
    assert (seen.likes, seen.dislikes, seen.live, seen.live_likes, seen.live_dislikes) == (3, 9, "base", 10, 2)
    expected = lower_tail_z(3, 12, 10, 12)
    assert abs(seen.p_value - expected.p_value) < 1e-9 and seen.p_value < 0.05
    assert "significantly worse" in check.reason
    assert second.like_counts == {"base": (10, 2), "community@1": (3, 9)}
    with RedisLink(redis_server.url) as link:
        registry = Registry(settings.trainer.registry_dir, link)
        assert registry.live(COMMUNITY) is None, "the base model still serves everyone"
        canary = link.call(link.store.canaries.get(COMMUNITY))
    # with the canary gone, the community trained again that night: a new candidate is the new canary
    assert second.outcome(COMMUNITY).status == "canary" and canary.version == 2
    assert (Path(settings.trainer.runs_dir) / second.run / "likes.png").stat().st_size > 5_000


def test_a_canary_is_promoted_once_it_has_its_ratings_and_is_not_worse(redis_server, tmp_path: Path, tiny_model_dir):
    asyncio.run(seed_community(redis_server.url))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, canary=CANARY)
    assert run_nightly(settings, quiet=True).outcome(COMMUNITY).status == "canary"
    rate(redis_server.url, None, likes=30, dislikes=10, first_rater=3000)  # before the canary: not counted

    rate(redis_server.url, "community@1", likes=8, dislikes=4, first_rater=1000)
    rate(redis_server.url, None, likes=6, dislikes=6, first_rater=2000)
    waiting = run_nightly(settings, quiet=True)
    assert waiting.canary_check.action == "waiting" and "12 of the 20 ratings needed" in waiting.canary_check.reason
    skipped = waiting.outcome(COMMUNITY)
    assert skipped.status == "skipped" and "a canary is still collecting ratings" in skipped.reasons[0]

    rate(redis_server.url, "community@1", likes=7, dislikes=3, first_rater=4000)
    result = CliRunner().invoke(app, ["canary", "check"], env=env_for(settings), catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "canary v1 promoted" in result.output and "15 likes of 22 ratings" in result.output
    with RedisLink(redis_server.url) as link:
        registry = Registry(settings.trainer.registry_dir, link)
        assert registry.live_version(COMMUNITY) == 1 and registry.history(COMMUNITY)[0].action == "promote"
        assert link.call(link.store.canaries.get(COMMUNITY)) is None

    status = CliRunner().invoke(app, ["status", "--json"], env=env_for(settings), catch_exceptions=False)
    rates = json.loads(status.output)["like_rates"]
    assert rates["community@1"]["likes"] == 15 and rates["community@1"]["serving"] == "live"
    low, high = rates["community@1"]["ci95"]
    assert (low, high) == wilson(15, 22) and low < 15 / 22 < high
    table = CliRunner().invoke(app, ["status"], env=env_for(settings), catch_exceptions=False).output
    assert "like-rate per version" in table and "68.2%" in table


def test_a_canary_the_gate_could_not_rank_must_be_liked_at_least_as_well_as_live(
    redis_server, tmp_path: Path, tiny_model_dir
):
    """Held-out ratings saturated (both AUCs near 1): the gate passed the candidate for members to decide. Liked a
    little less than live, not significantly so: an ordinary canary would be promoted, this one is rolled back."""
    asyncio.run(seed_community(redis_server.url))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, canary=CANARY)
    assert run_nightly(settings, quiet=True).outcome(COMMUNITY).status == "canary"
    with RedisLink(redis_server.url) as link:
        record = link.call(link.store.canaries.get(COMMUNITY))
        link.call(link.store.canaries.set(record.model_copy(update={"members_decide": True})))

    rate(redis_server.url, "community@1", likes=10, dislikes=10, first_rater=1000)
    rate(redis_server.url, None, likes=11, dislikes=9, first_rater=2000)
    with RedisLink(redis_server.url) as link:
        canary = link.call(link.store.canaries.get(COMMUNITY))
        judged = judge(Registry(settings.trainer.registry_dir, link), canary, settings.trainer.canary)
        plain = judge(
            Registry(settings.trainer.registry_dir, link),
            canary.model_copy(update={"members_decide": False}),
            settings.trainer.canary,
        )
    assert plain.action == "promoted", "not significantly worse: an ordinary canary goes live"
    assert judged.action == "rolled back" and "liked less than live" in judged.reason, judged.reason
    assert judged.figures is not None and judged.figures.p_value > 0.05


def test_a_canary_members_plainly_prefer_is_promoted_before_it_has_all_its_ratings(
    redis_server, tmp_path: Path, tiny_model_dir
):
    asyncio.run(seed_community(redis_server.url))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, canary=CANARY)
    assert run_nightly(settings, quiet=True).outcome(COMMUNITY).status == "canary"
    rate(redis_server.url, "community@1", likes=11, dislikes=3, first_rater=1000)
    rate(redis_server.url, None, likes=4, dislikes=12, first_rater=2000)
    with RedisLink(redis_server.url) as link:
        registry = Registry(settings.trainer.registry_dir, link)
        canary = link.call(link.store.canaries.get(COMMUNITY))
        early = judge(registry, canary, settings.trainer.canary)
        # 14 ratings are less than half of 40: it waits, however clear
        too_few = judge(registry, canary.model_copy(update={"min_ratings": 40}), settings.trainer.canary)

    assert early.action == "promoted", early.reason
    assert "significantly better" in early.reason and "with 14 of the 20 ratings needed" in early.reason
    assert too_few.action == "waiting", too_few.reason


def test_the_statistics_match_their_textbook_values() -> None:
    low, high = wilson(8, 10)  # Wilson (1927); e.g. Newcombe 1998, table I: 0.4902 to 0.9433
    assert abs(low - 0.4902) < 1e-3 and abs(high - 0.9433) < 1e-3
    test = lower_tail_z(3, 12, 10, 12)  # pooled p = 13/24
    assert abs(test.z - (-2.8677)) < 1e-3 and abs(test.p_value - 0.00207) < 1e-5
    assert lower_tail_z(0, 0, 5, 10) is None
