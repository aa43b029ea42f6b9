from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brain.engine.batching import Engine
from brain.engine.model_loading import LoadedModel, load_serving_model
from tests.support.tiny_model import make_tiny_model_dir


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_serving_model(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = make_tiny_model_dir(tmp_path_factory.mktemp("tiny-gpt2"), arch="gpt2")
    return load_serving_model(str(path), cache_dir=tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(params=["llama", "gpt2"])
def tiny(request: pytest.FixtureRequest) -> LoadedModel:
    """Each tiny architecture in turn: Llama (rotary positions) and GPT-2 (learned positions)."""
    return request.getfixturevalue(f"tiny_{request.param}")


@pytest.fixture
def start_engine() -> Iterator[Callable[..., Engine]]:
    """Start engines on a loaded model; every one is stopped when the test ends."""
    engines: list[Engine] = []

    def start(loaded: LoadedModel, *, max_batch_size: int = 16, **options) -> Engine:
        options.setdefault("eos_token_ids", loaded.eos_token_ids)
        engine = Engine(loaded.model, max_batch_size=max_batch_size, device=loaded.device, **options)
        engine.start()
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.stop()
