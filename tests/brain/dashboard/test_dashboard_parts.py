"""The dashboard's parts that need no browser: off without its key, a key that must be long and apart from the
API key, the schedule's pause obeyed by `trainer schedule`, and the first-token percentiles read from the
histogram as PromQL would."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from brain.dashboard.figures import quantile
from brain.operator_records import SchedulePause
from brain.settings import Secrets
from brain.store import Store
from brain.store.client import connect
from tests.trainer.nightly.helpers import nightly_settings, seed_community
from trainer.nightly.schedule import nightly_job


def test_the_dashboard_is_off_without_an_operator_key(brain) -> None:
    assert httpx.get(f"{brain.url}/dashboard").status_code == 404
    login = httpx.post(f"{brain.url}/dashboard/api/login", json={"key": "test-key"}, headers=brain.headers())
    assert login.status_code == 404


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"operator_key": "short-key"}, "at least 32 characters"),
        ({"operator_key": "k" * 40, "api_key": "k" * 40}, "must differ from OWNCHAT_API_KEY"),
    ],
)
def test_an_operator_key_too_short_or_equal_to_the_api_key_is_refused(values: dict[str, str], said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        Secrets(**values)


async def _pause(url: str, pause: SchedulePause | None) -> None:
    store = Store(connect(url))
    try:
        await store.dashboard.set_schedule_pause(pause)
    finally:
        await store.close()


def test_a_paused_schedule_skips_its_run_and_runs_again_once_resumed(redis_server, tmp_path: Path, tiny_model_dir):
    asyncio.run(seed_community(redis_server.url))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path)
    runs = Path(settings.trainer.runs_dir)
    asyncio.run(_pause(redis_server.url, SchedulePause(at="2026-12-06T03:00:00+00:00", reason="holiday")))
    nightly_job(settings, threading.Event())
    assert not runs.exists() or not any(runs.iterdir()), "no run while paused"

    asyncio.run(_pause(redis_server.url, None))
    nightly_job(settings, threading.Event())
    assert len([p for p in runs.iterdir() if (p / "report.json").is_file()]) == 1


def test_first_token_percentiles_interpolate_within_the_bucket_as_promql_does() -> None:
    # 10 observations: 4 up to 0.1 s, 4 more up to 0.5 s, 2 more up to 1 s
    buckets = [(0.1, 4.0), (0.5, 8.0), (1.0, 10.0), (float("inf"), 10.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (5 - 4) / 4)
    assert quantile(0.9, buckets) == pytest.approx(0.5 + 0.5 * (9 - 8) / 2)
    assert quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.99, [(0.1, 1.0), (float("inf"), 3.0)]) == 0.1, "beyond the last bucket: its bound"
