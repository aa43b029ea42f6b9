"""The brain's process asks glibc to return freed memory (bench/soak.py measures the effect), unless the
operator chose their own allocator settings."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)
PROBE = "from brain.service.allocator import tune_allocator; print(tune_allocator())"


def _run(**env: str) -> str:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    clean.pop("LD_PRELOAD", None)
    done = subprocess.run([sys.executable, "-c", PROBE], env=clean | env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_thresholds_are_set_on_glibc() -> None:
    assert _run() == "True"


def test_an_operators_own_malloc_settings_are_left_alone() -> None:
    assert _run(MALLOC_ARENA_MAX="4") == "False"
