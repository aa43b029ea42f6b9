"""The store's Lua scripts: each file reads with its includes put in, and each ships with the package."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

from brain.store import scripts

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "brain" / "store" / "scripts"


def test_every_script_reads_whole_with_its_includes():
    names = sorted(path.stem for path in SCRIPTS.glob("*.lua"))
    assert "record_turn" in names and "forget" in names
    for name in names:
        text = scripts.source(name)
        assert "-- include:" not in text, f"{name}.lua: an include was left unresolved"
    assert "local function keep_bounded" in scripts.source("claim_request")
    assert "local function drop_turns" in scripts.source("reset_chat")


async def test_a_registered_script_runs_on_redis_and_in_a_pipeline(store):
    """Both ways a repository runs a script: called (EVALSHA) and queued on a pipeline (its text travels)."""
    count = scripts.register(store.r, "count_request")
    assert [int(n) for n in await count(keys=["oc-test:rate"], args=[60])][0] == 1
    pipe = store.r.pipeline(transaction=False)
    scripts.queue(pipe, count, ["oc-test:rate"], [60])
    [(counted, ttl)] = await pipe.execute()
    assert int(counted) == 2 and 0 < int(ttl) <= 60


def test_the_scripts_ship_with_the_package():
    """setuptools' package-data must name them, or an installed brain finds no script to run."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = config.get("brain.store.scripts", [])
    unshipped = [p.name for p in SCRIPTS.glob("*.lua") if not any(fnmatch(p.name, pattern) for pattern in patterns)]
    assert patterns and not unshipped, f"not in the package data: {unshipped}"
