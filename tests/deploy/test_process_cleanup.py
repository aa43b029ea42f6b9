"""Every process stops what it started: `brain serve --start-redis` stopped with SIGTERM (as compose, k8s and
systemd stop it) and `bot console --start-brain` left with /quit leave no redis-server behind, nor a brain.

Each test finds the redis-server by the process that started it and by its port, never by scanning the
machine's processes: other redis-servers may run here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brain.redis_local import answers, free_port
from tests.support.eventually import eventually_sync


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux: each thread lists the children it started)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def command_name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def running(pid: int) -> bool:
    """Whether ``pid`` is alive: gone, or a zombie nobody waited for, both count as stopped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def laptop(tmp_path: Path, tiny_model_dir: Path) -> Iterator[dict[str, str]]:
    """A laptop's environment: the tiny model, and a Redis port nobody answers on, for --start-redis to use."""
    redis_port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OWNCHAT_")}
    env |= {
        "OWNCHAT_MODEL__NAME": str(tiny_model_dir),
        "OWNCHAT_MODEL__MAX_NEW_TOKENS": "8",
        "OWNCHAT_REDIS__URL": f"redis://127.0.0.1:{redis_port}/0",
        "OWNCHAT_REDIS__LOCAL_DIR": str(tmp_path / "redis"),
        "PYTHONPATH": str(Path.cwd()),
        "TERM": "dumb",
    }
    assert not answers("127.0.0.1", redis_port)
    yield env


def redis_port(env: dict[str, str]) -> int:
    return int(env["OWNCHAT_REDIS__URL"].rsplit(":", 1)[1].split("/")[0])


def started_redis(parent: int, port: int) -> int:
    """The pid of the redis-server that ``parent`` started, answering on ``port``."""
    [redis] = [pid for pid in children(parent) if command_name(pid) == "redis-server"]
    assert answers("127.0.0.1", port)
    return redis


def test_sigterm_stops_the_brain_and_the_redis_it_started(laptop: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    brain = subprocess.Popen(
        [sys.executable, "-m", "brain", "serve", "--start-redis", "--port", str(port)],
        env=laptop, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        eventually_sync(lambda: ready(url) or brain.poll() is not None, "the brain was up", timeout=120)
        assert brain.poll() is None, brain.stdout.read().decode()
        redis = started_redis(brain.pid, redis_port(laptop))

        brain.send_signal(signal.SIGTERM)
        code = brain.wait(60)
    finally:
        if brain.poll() is None:
            brain.kill()
            brain.wait()
    output = brain.stdout.read().decode()
    assert code == 0, output
    assert not running(redis), f"the redis-server it started (pid {redis}) still runs"
    assert not answers("127.0.0.1", redis_port(laptop))
    assert "Traceback" not in output


def test_quitting_the_console_stops_the_brain_and_the_redis_it_started(laptop: dict[str, str], tmp_path: Path) -> None:
    brain_url = f"http://127.0.0.1:{free_port()}"
    console = subprocess.Popen(
        [sys.executable, "-m", "bot", "console", "--start-brain", "--brain-url", brain_url],
        env=laptop, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        eventually_sync(lambda: ready(brain_url) or console.poll() is not None, "the brain was up", timeout=120)
        assert console.poll() is None, console.stderr.read().decode()
        [brain] = children(console.pid)
        redis = started_redis(brain, redis_port(laptop))

        out, err = console.communicate(b"hello\n/quit\n", timeout=120)
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
    assert console.returncode == 0, err.decode()
    assert "bot>" in out.decode()
    assert not running(brain), f"the brain it started (pid {brain}) still runs"
    assert not running(redis), f"the redis-server its brain started (pid {redis}) still runs"
    assert not answers("127.0.0.1", redis_port(laptop))
    log = (tmp_path / "var" / "brain.log").read_text()
    assert "Traceback" not in log
