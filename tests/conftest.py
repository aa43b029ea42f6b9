from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from brain.redis_local import LocalRedis

# tests never reach a model hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# torch's busy-waiting OpenMP threads slow everything down on a small shared machine; set before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# one id key (member hashes: tombstones, adapter names) for every Redis the tests start, trainer subprocesses
# included: a test names a member's adapter before the brain it starts has read a key from its Redis
os.environ.setdefault("OWNCHAT_ID_KEY", "tests-id-key")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[LocalRedis]:
    """A fresh redis-server of this test's own; the test may kill and restart it."""
    server = LocalRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_model import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def brain(tmp_path: Path, tiny_model_dir: Path) -> Iterator[object]:
    """A running brain (tiny model) with its own redis-server; API key 'test-key'."""
    from tests.support.brain_server import running_brain

    with running_brain(tmp_path, tiny_model_dir) as handle:
        yield handle
