"""A run killed after it wrote report.json (before its plots and its pruning) is finished by the next run: the
plots are drawn, and adapter versions beyond keep_versions go."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from brain.adapters import COMMUNITY, version_dir
from tests.trainer.nightly.helpers import nightly_settings, seed_community
from trainer.core.loop import RunCancelled
from trainer.nightly.link import RedisLink
from trainer.nightly.registry import Registry
from trainer.nightly.report import read_report
from trainer.nightly.run import run_nightly
from trainer.nightly.runs import run_dirs


def test_the_next_run_draws_the_plots_and_prunes_what_a_killed_run_left(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    asyncio.run(seed_community(redis_server.url))
    settings = nightly_settings(redis_server.url, tiny_model_dir, tmp_path, keep_versions=2)
    first = run_nightly(settings, quiet=True)
    assert first.status == "finished"
    killed = run_dirs(settings.trainer.runs_dir)[-1]
    assert (killed / "report.png").is_file()
    # killed right after report.json: no plot, and the versions it would have pruned still there
    (killed / "report.png").unlink()
    registry = Path(settings.trainer.registry_dir)
    with RedisLink(redis_server.url) as link:
        reg = Registry(registry, link, keep=2)
        source = version_dir(registry, COMMUNITY, reg.versions(COMMUNITY)[-1])
        copy = tmp_path / "adapter-copy"
        shutil.copytree(source, copy)
        for _ in range(3):
            reg.add(COMMUNITY, copy, base_model=settings.model.name, run=killed.name)
        assert len(reg.versions(COMMUNITY)) > 2

    # the next run repairs both first thing: even one stopped before it trains anything
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(RunCancelled):
        run_nightly(settings, stop=stopped, quiet=True)
    second = read_report(run_dirs(settings.trainer.runs_dir)[-1])

    assert second.status == "cancelled"
    assert second.repaired_plots == [killed.name] and (killed / "report.png").is_file()
    with RedisLink(redis_server.url) as link:
        reg = Registry(registry, link, keep=2)
        versions = reg.versions(COMMUNITY)
        live = reg.live_version(COMMUNITY)
    assert len([v for v in versions if v != live]) <= 2, versions
    third = run_nightly(settings, quiet=True)
    assert third.repaired_plots == [], "a run's plots are drawn once"
