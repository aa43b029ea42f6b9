"""The operator's dashboard in a real Chromium, against a real brain (tiny model), a real redis-server and a
registry made by a real nightly run: the page shows what Redis and the run's report hold, its actions change
what the brain serves, and without the operator key nothing is done.

Needs Debian's ``chromium`` (``apt-get install chromium``) and Playwright's Python package; Playwright's own
browser download is never used. Set OWNCHAT_DASHBOARD_SCREENSHOTS to a folder to keep screenshots of the views
(the README's come from here).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from brain.adapters import COMMUNITY
from brain.redis_local import LocalRedis
from brain.store import Store
from brain.store.client import connect
from tests.brain.dashboard.conftest import MISSING, chromium
from tests.support.brain_server import BrainHandle, running_brain
from tests.support.eventually import eventually_sync
from tests.trainer.nightly.helpers import nightly_settings, seed_community
from tests.trainer.nightly.ratings_helpers import rate_version

CHROMIUM = chromium()
OPERATOR_KEY = "operator-" + "k" * 40
CANARY = {"share": 0.5, "min_ratings": 20, "level": 0.05}
SHOTS = os.environ.get("OWNCHAT_DASHBOARD_SCREENSHOTS")


async def _rate_and_read(redis_url: str) -> dict[str, Any]:
    store = Store(connect(redis_url))
    try:
        await rate_version(store, "community@1", likes=8, dislikes=2, first_rater=1000)
        await rate_version(store, None, likes=5, dislikes=5, first_rater=2000)
        counts = await store.counts.members(0)
        return {"members": counts, "summaries": await store.dashboard.run_summaries()}
    finally:
        await store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[dict[str, Any]]:
    """A nightly run that started a canary (community@1), members' ratings, and a brain with the dashboard on."""
    from trainer.nightly.run import run_nightly

    root = tmp_path_factory.mktemp("dashboard")
    redis = LocalRedis(root / "redis").start()
    try:
        asyncio.run(seed_community(redis.url))
        settings = nightly_settings(redis.url, tiny_model_dir, root, canary=CANARY)
        report = run_nightly(settings, quiet=True)
        assert report.outcome(COMMUNITY).status == "canary", report.outcome(COMMUNITY)
        seen = asyncio.run(_rate_and_read(redis.url))
        trainer = {"registry_dir": settings.trainer.registry_dir, "runs_dir": settings.trainer.runs_dir,
                   "lock_ttl_s": 10, "canary": CANARY}  # fmt: skip
        with running_brain(root, tiny_model_dir, redis=redis, operator_key=OPERATOR_KEY, trainer=trainer) as brain:
            yield {"brain": brain, "report": report, **seen}
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip(MISSING)
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra has it)")
    sync_playwright = sync_api.sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1240, "height": 900})
    opened = context.new_page()
    opened.errors = []  # type: ignore[attr-defined]
    opened.on("console", lambda m: m.type == "error" and opened.errors.append(m.text))
    opened.on("pageerror", lambda e: opened.errors.append(str(e)))
    yield opened
    context.close()


def log_in(page: Any, brain: BrainHandle) -> None:
    page.goto(f"{brain.url}/dashboard")
    page.fill("#key", OPERATOR_KEY)
    page.click("#login-form button")
    page.wait_for_selector("body[data-loaded=learning]")


def shoot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        path = Path(SHOTS) / f"dashboard-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        from PIL import Image

        with Image.open(path) as shot:  # a palette of 64 colours: a flat page loses nothing, the file shrinks
            small = shot.convert("RGB").quantize(colors=64)
        small.save(path, optimize=True)


def served_adapter(brain: BrainHandle) -> str | None:
    """What the brain serves a member outside any canary (not opted in): the live adapter's name, or None."""
    body = {"platform": "telegram", "user_id": "4242", "chat_id": "4242", "text": "Where is Paris?",
            "sampling": {"temperature": 0, "max_new_tokens": 2}}  # fmt: skip
    response = httpx.post(f"{brain.url}/v1/chat", json=body, headers=brain.headers(), timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["adapter"]


def test_the_page_shows_what_redis_and_the_report_hold(world: dict[str, Any], page: Any) -> None:
    brain, report = world["brain"], world["report"]
    page.goto(f"{brain.url}/dashboard")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#key", "not-the-key-" + "x" * 30)
    page.click("#login-form button")
    page.wait_for_selector("#login-error:has-text('not the operator key')")
    shoot(page, "login")
    # the refused login's 401 is the one error the browser may log
    assert [error for error in page.errors if "401" not in error] == []  # type: ignore[attr-defined]
    page.errors.clear()  # type: ignore[attr-defined]
    page.fill("#key", OPERATOR_KEY)
    page.click("#login-form button")
    page.wait_for_selector("body[data-loaded=learning]")

    # the run, as its report has it: status, the target's outcome, perplexities and the gate's reasons
    row = page.locator(f"#runs tr[data-run='{report.run}']")
    assert "finished" in row.inner_text() and "canary v1" in row.inner_text()
    community = report.outcome(COMMUNITY)
    scores = community.scores
    ppl = page.locator("#run-detail tr[data-target=community] td.ppl").inner_text()
    assert ppl == f"{scores.base.test_ppl:.2f} / {scores.live.test_ppl:.2f} / {scores.candidate.test_ppl:.2f}"
    detail = page.locator("#run-detail").inner_text()
    assert all(reason in detail for reason in community.reasons)
    # its loss curve: one validation point per evaluation of the fine-tune
    assert page.locator("#loss-chart circle.val-loss").count() == len(community.finetune.history["val"])
    # the canary and its ratings so far (8 likes of 10) against the base model's 5 of 10
    canary = page.locator("#canary").inner_text()
    assert "community@1" in canary and "50.0 %" in canary and "80.0 %" in canary
    assert page.locator("#canary-ratings").inner_text() == "10 of 20"
    assert "waiting" in canary
    # the like-rate per served version since the run, with an interval each
    assert page.locator("#likes-chart g.like-point").count() == 2
    assert "8 likes of 10" in page.locator("#likes-chart g[data-version='community@1'] title").text_content()
    assert "The base model serves every target." in page.locator("#live").inner_text()
    shoot(page, "learning")

    page.click("#tabs button[data-view=members]")
    page.wait_for_selector("body[data-loaded=members]")
    counts = world["members"]
    tiles = {
        label: page.locator(f".tile[data-label='{label}'] .value").inner_text()
        for label in ("members", "opted in", "opted out", "ratings this week")
    }
    assert tiles == {"members": str(counts.members), "opted in": str(counts.opted_in),
                     "opted out": str(counts.opted_out), "ratings this week": str(counts.ratings)}  # fmt: skip
    assert counts.ratings == 20 and counts.opted_in >= 4
    assert "telegram:" not in page.content(), "a member's id is never shown"
    shoot(page, "members")

    served_adapter(brain)
    page.click("#tabs button[data-view=serving]")
    eventually_sync(
        lambda: page.locator(".tile[data-label=requests] .value").inner_text() == "1",
        "the serving view showed the one chat request",
    )
    assert re.fullmatch(r"\d+ ms", page.locator(".tile[data-label='time to first token p50'] .value").inner_text())
    assert page.locator(".tile[data-label='admitted'] .value").inner_text() == "1"
    shoot(page, "serving")
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_nightly_run_left_its_summary_in_redis(world: dict[str, Any]) -> None:
    report, (summary,) = world["report"], world["summaries"]
    community, summed = report.outcome(COMMUNITY), world["summaries"][0].targets[0]
    assert (summary.run, summary.status, summary.log_entries) == (report.run, "finished", report.export.entries)
    assert (summed.target, summed.status, summed.version, summed.reasons) == (
        COMMUNITY, "canary", 1, community.reasons
    )  # fmt: skip
    assert summed.candidate_ppl == community.scores.candidate.test_ppl
    assert summed.val_loss == [(step, loss) for step, loss in community.finetune.history["val"]]
    assert summary.canary_started is not None and summary.canary_started.action == "started"


def test_actions_are_refused_without_the_key_or_the_csrf_token(world: dict[str, Any]) -> None:
    brain = world["brain"]
    action = f"{brain.url}/dashboard/api/actions/rollback"
    body = {"target": "community", "version": "base"}
    # the chat API key is not the operator key
    assert httpx.post(action, json=body, headers=brain.headers()).status_code == 401
    assert httpx.get(f"{brain.url}/dashboard/api/learning", headers=brain.headers()).status_code == 401
    with httpx.Client(base_url=brain.url) as client:
        login = client.post("/dashboard/api/login", json={"key": OPERATOR_KEY})
        assert login.status_code == 200
        assert "httponly" in login.headers["set-cookie"].lower()
        assert "samesite=strict" in login.headers["set-cookie"].lower()
        refused = client.post("/dashboard/api/actions/schedule", json={"paused": True})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
        assert client.get("/dashboard/api/learning").json()["paused"] is None, "nothing was paused"
        # bad input changes nothing either
        csrf = {"X-CSRF-Token": login.json()["csrf"]}
        assert (
            client.post(
                "/dashboard/api/actions/rollback", json={"target": "../x", "version": 1}, headers=csrf
            ).status_code
            == 422
        )


def test_actions_through_the_page_change_what_the_brain_serves(world: dict[str, Any], page: Any) -> None:
    brain = world["brain"]
    assert served_adapter(brain) is None, "only the canary's share of opted-in members gets community@1"
    log_in(page, brain)

    # a cancelled confirmation does nothing
    page.click("#canary button:has-text('Promote now')")
    page.click("#confirm button[value=cancel]")
    assert served_adapter(brain) is None

    page.click("#canary button:has-text('Promote now')")
    page.click("#confirm-ok")
    page.wait_for_selector("#live td.version:has-text('v1')")
    eventually_sync(lambda: served_adapter(brain) == "community@1", "every member was served community@1")
    assert "No canary is running." in page.locator("#canary").inner_text()

    page.select_option("#rollback-target", "community")
    page.select_option("#rollback-version", "base")
    page.click("#rollback")
    assert "Roll community back to the base model?" in page.locator("#confirm-text").inner_text()
    shoot(page, "confirm")
    page.click("#confirm-ok")
    page.wait_for_selector("#live:has-text('The base model serves every target.')")
    eventually_sync(lambda: served_adapter(brain) is None, "the brain went back to the base model")

    page.click("#schedule-toggle")
    page.click("#confirm-ok")
    page.wait_for_selector("#schedule-state:has-text('paused')")
    audit = page.locator("#audit").inner_text()
    assert "community: v1 -> base" in audit and "promoted for everyone" in audit and "paused" in audit
    assert page.errors == []  # type: ignore[attr-defined]
