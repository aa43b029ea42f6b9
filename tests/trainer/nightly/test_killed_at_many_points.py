"""A trainer killed (kill -9) at any point of a run leaves the live record complete: Redis names a version whose
directory holds a whole adapter, its files as they were. Kill points follow the run's own files: the export
written, a checkpoint written, a new version copied into the registry, the report written; after them a run
finishes. (Redis killed under load: tests/brain/service/test_redis_kill_under_load.py and bench/soak.py.)"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from brain.adapters import COMMUNITY
from brain.registry_records import LiveAdapter
from tests.support.eventually import eventually_sync
from tests.trainer.nightly.helpers import nightly_settings, seed_community, trainer_process, write_config
from trainer.nightly.link import RedisLink
from trainer.nightly.registry import Registry
from trainer.nightly.run import run_nightly

SLOW = {"finetune": {"max_steps": 60, "checkpoint_every": 2, "eval_every": 30}}


def live_record(redis_url: str, registry_dir: Path) -> LiveAdapter | None:
    with RedisLink(redis_url) as link:
        return Registry(registry_dir, link).live(COMMUNITY)


def assert_complete(record: LiveAdapter | None, registry_dir: Path) -> None:
    assert record is not None, "something stays live"
    version = registry_dir / record.path
    assert (version / "meta.json").is_file() and (version / "adapter_config.json").is_file(), version
    assert any(p.suffix == ".safetensors" and p.stat().st_size > 0 for p in version.iterdir()), version


def test_a_trainer_killed_at_any_point_leaves_the_live_record_complete(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    asyncio.run(seed_community(redis_server.url))
    run_nightly(nightly_settings(redis_server.url, tiny_model_dir, tmp_path), quiet=True)
    slow = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, **SLOW, lock_ttl_s=600)
    runs_dir, registry_dir = Path(slow.trainer.runs_dir), Path(slow.trainer.registry_dir)
    assert_complete(live_record(redis_server.url, registry_dir), registry_dir)
    config = write_config(tmp_path / "ownchat.yaml", slow)

    def newest_run() -> Path:
        return max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)

    versions_before = {p.name for p in (registry_dir / COMMUNITY).iterdir()}
    points: dict[str, Callable[[], bool]] = {
        "export written": lambda: (newest_run() / "export" / "manifest.json").is_file(),
        "checkpoint written": lambda: any(newest_run().glob("targets/community/checkpoint/state.pt")),
        "version copied in": lambda: {p.name for p in (registry_dir / COMMUNITY).iterdir()} != versions_before,
        "report written": lambda: (newest_run() / "report.json").is_file(),
    }
    for point, reached in points.items():
        started = {p.name for p in runs_dir.iterdir()}
        process = trainer_process(config, "nightly")
        eventually_sync(lambda started=started: {p.name for p in runs_dir.iterdir()} - started, "the run began")
        eventually_sync(lambda reached=reached, process=process: reached() or process.poll() is not None, point,
                        timeout=300)  # fmt: skip
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        assert_complete(live_record(redis_server.url, registry_dir), registry_dir)

    report = run_nightly(slow, quiet=True)
    assert report.status == "finished"
    assert_complete(live_record(redis_server.url, registry_dir), registry_dir)
