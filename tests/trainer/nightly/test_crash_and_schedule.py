"""Safety: a run killed midway leaves the live adapter alone and the next run takes its lock over and completes
(resuming the fine-tune); the scheduler fires at 03:00 local time and stops cleanly on SIGTERM; two processes
train."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from brain.adapters import COMMUNITY
from brain.settings import Settings
from tests.support.eventually import eventually_sync
from tests.trainer.nightly.helpers import (
    nightly_settings,
    seed_community,
    trainer_process,
    wait_for_checkpoint,
    write_config,
)
from trainer.errors import ConfigError
from trainer.nightly.link import RedisLink
from trainer.nightly.lock import Holder
from trainer.nightly.registry import Registry
from trainer.nightly.report import Outcome, RunReport, read_report
from trainer.nightly.run import run_nightly
from trainer.nightly.runs import report_dirs, run_dirs
from trainer.nightly.schedule import build_scheduler, cron_trigger

SLOW = {"finetune": {"max_steps": 150, "checkpoint_every": 2, "eval_every": 50}}


def registry_files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def community(report: RunReport) -> Outcome:
    return report.outcome(COMMUNITY)


def test_a_run_killed_midway_leaves_the_live_adapter_and_the_next_run_completes(
    redis_server, tmp_path: Path, tiny_model_dir: Path
):
    asyncio.run(seed_community(redis_server.url))
    run_nightly(nightly_settings(redis_server.url, tiny_model_dir, tmp_path), quiet=True)
    slow = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, **SLOW, lock_ttl_s=600)
    registry_dir = Path(slow.trainer.registry_dir)
    with RedisLink(redis_server.url) as link:
        live_before = Registry(registry_dir, link).live(COMMUNITY)
    files_before = registry_files(registry_dir)

    process = trainer_process(write_config(tmp_path / "ownchat.yaml", slow), "nightly")
    wait_for_checkpoint(Path(slow.trainer.runs_dir), process)
    process.send_signal(signal.SIGKILL)  # mid-training, no chance to clean up
    process.wait(30)

    with RedisLink(redis_server.url) as link:
        assert Registry(registry_dir, link).live(COMMUNITY) == live_before
        holder = Holder.parse(link.call(link.store.trainer_lock.holder()))
    assert registry_files(registry_dir) == files_before

    # its lock has ten minutes of lease left, but its process is gone from this host: taken over at once
    assert holder is not None and holder.pid == process.pid
    report = run_nightly(slow, quiet=True)
    assert report.status == "finished"
    assert community(report).finetune.resumed_from >= 2, "the fine-tune continued from the checkpoint"
    assert community(report).status in {"promoted", "kept"}
    killed = run_dirs(slow.trainer.runs_dir)[1]
    assert not (killed / "report.json").exists() and not (killed / "targets").exists(), "its data was purged"


def test_the_schedule_fires_at_three_in_the_configured_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    settings = Settings(trainer={"timezone": "Europe/Berlin", "misfire_grace_s": 900})
    fire = cron_trigger(settings).get_next_fire_time(None, datetime(2026, 7, 1, 12, 0, tzinfo=berlin))
    assert fire == datetime(2026, 7, 2, 3, 0, tzinfo=berlin) and fire.utcoffset() == timedelta(hours=2)

    job = build_scheduler(settings, stop=None).get_job("nightly")
    assert (job.misfire_grace_time, job.coalesce, job.max_instances) == (900, True, 1)
    with pytest.raises(ConfigError, match="not a known time zone"):
        cron_trigger(Settings(trainer={"timezone": "Mars/Olympus"}))
    with pytest.raises(ConfigError, match="schedule_cron"):
        cron_trigger(Settings(trainer={"schedule_cron": "at three"}))


class Output:
    """A process's output lines as they come, read on a thread so that the test can wait for one."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line.decode(errors="replace"))

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def __str__(self) -> str:
        return "".join(self.lines)


def test_the_scheduler_starts_the_run_at_its_time_and_says_when_the_next_one_is(
    redis_server, tmp_path: Path, tiny_model_dir: Path
):
    # a schedule with seconds, 20 s ahead: once a day at that second. With no logs in Redis the run has
    # nothing to train on, so it reports within seconds.
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
    cron = f"{at.second} {at.minute} {at.hour} * * *"
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, schedule_cron=cron, timezone="UTC")
    process = trainer_process(write_config(tmp_path / "ownchat.yaml", settings), "schedule")
    output = Output(process)
    try:
        eventually_sync(lambda: output.has("next nightly run at"), "the scheduler said when it runs", timeout=60)
        assert output.has(f"next nightly run at {at.isoformat()}"), str(output)
        assert not run_dirs(settings.trainer.runs_dir), "nothing ran before its time"

        tomorrow = (at + timedelta(days=1)).isoformat()
        eventually_sync(lambda: output.has(f"next nightly run at {tomorrow}"), "the run ended", timeout=120)
        [run] = report_dirs(settings.trainer.runs_dir)
        report = read_report(run)
        assert report.status == "finished" and report.finished_at is not None
        assert datetime.fromisoformat(report.started_at) >= at
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        output.thread.join(10)
    assert code == 0, str(output)
    assert len(run_dirs(settings.trainer.runs_dir)) == 1, "one run, at its time"
    with RedisLink(redis_server.url) as link:
        assert link.call(link.store.trainer_lock.holder()) is None, "the lock was released"


def test_sigterm_stops_the_scheduler_cleanly_during_a_run(redis_server, tmp_path: Path, tiny_model_dir: Path):
    asyncio.run(seed_community(redis_server.url))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, finetune={"max_steps": 5000})
    process = trainer_process(write_config(tmp_path / "ownchat.yaml", settings), "schedule", "--now")
    wait_for_checkpoint(Path(settings.trainer.runs_dir), process)
    process.send_signal(signal.SIGTERM)

    assert process.wait(60) == 0, process.stdout.read().decode()
    assert read_report(run_dirs(settings.trainer.runs_dir)[-1]).status == "cancelled"
    with RedisLink(redis_server.url) as link:
        assert link.call(link.store.trainer_lock.holder()) is None, "the lock was released"
        assert Registry(settings.trainer.registry_dir, link).live(COMMUNITY) is None


def test_the_fine_tune_runs_unchanged_with_two_processes(redis_server, tmp_path: Path, tiny_model_dir: Path):
    asyncio.run(seed_community(redis_server.url))
    launcher = f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node 2"
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, finetune={"launcher": launcher})

    report = run_nightly(settings, quiet=True)

    tuned = community(report).finetune
    assert tuned.processes == 2
    assert tuned.best_val_loss < 0.5 * tuned.base_val_loss
    assert community(report).status == "promoted"
