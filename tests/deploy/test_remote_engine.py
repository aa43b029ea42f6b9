"""`model.engine: vllm`: a brain that loads only the tokenizer and generates on an OpenAI-compatible server.

The server is a second real brain (tiny model) speaking vLLM's side of the protocol (completions_server.py).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from bot.client import BrainClient
from brain.adapters import COMMUNITY, user_target, version_dir
from brain.api_models import ChatReply, ChatRequest, SamplingParams, UserRef
from brain.engine.backend import Generated
from brain.engine.remote import AdapterRef, RemoteEngine, RemoteEngineError
from brain.prompt import render
from brain.redis_local import LocalRedis, free_port
from brain.registry_records import LiveAdapter, RegistryEvent, ReloadEvent, VersionMeta
from brain.service.app import create_app
from brain.service.embedded import serve_in_thread
from brain.settings import ModelSettings, Secrets
from brain.store import Store
from brain.store.client import connect
from tests.deploy.completions_server import ServerLog, add_vllm_routes
from tests.support.brain_server import brain_settings, running_brain
from tests.support.eventually import eventually

BACKEND_KEY = "backend-key-for-tests"
# short greedy replies: the tiny model says nothing useful, and long replies only cost time
SHORT_GREEDY = {"temperature": 0, "max_new_tokens": 12}
GREEDY = SamplingParams(temperature=0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=12)


class Backend:
    def __init__(self, url: str, log: ServerLog, model_name: str):
        self.url, self.log, self.model_name = url, log, model_name


@contextmanager
def vllm_like_server(directory: Path, model_dir: Path) -> Iterator[Backend]:
    redis = LocalRedis(directory / "redis").start()
    try:
        settings = brain_settings(redis.url, model_dir)
        settings.secrets = Secrets(api_key=BACKEND_KEY)
        app = create_app(settings)
        log = add_vllm_routes(app)
        with serve_in_thread(app, free_port()) as url:
            yield Backend(url, log, model_dir.name)  # as its /v1/models names it: no path
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Backend]:
    with vllm_like_server(tmp_path_factory.mktemp("vllm"), tiny_model_dir) as server:
        yield server


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A registry as `trainer nightly` leaves it: two real LoRA versions of the community adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("registry")
    for version in (1, 2):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
        path = version_dir(root, COMMUNITY, version)
        peft_model.save_pretrained(path)
        VersionMeta(target=COMMUNITY, version=version, created_at="2026-11-30T03:00:00+00:00",
                    base_model=str(tiny_model_dir)).write(path)  # fmt: skip
    return root


def chat(text: str, user: str = "7") -> ChatRequest:
    return ChatRequest(platform="telegram", user_id=user, chat_id="c1", text=text, sampling=SHORT_GREEDY)


async def collect(items: AsyncIterator[str | Generated]) -> tuple[list[str], Generated]:
    deltas, result = [], None
    async for item in items:
        if isinstance(item, Generated):
            result = item
        else:
            deltas.append(item)
    assert result is not None
    return deltas, result


async def test_a_brain_on_a_remote_engine_holds_the_same_conversation(
    backend: Backend, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNCHAT_VLLM_API_KEY", BACKEND_KEY)
    overrides = {
        "model": {"engine": "vllm", "vllm_url": backend.url + "/v1"},
        "memory": {"max_turns": 12, "max_tokens": 4000},
    }
    with running_brain(tmp_path, tiny_model_dir, **overrides) as front:
        assert front.runtime.loaded.model is None, "the front brain loaded model weights"
        asked = len(backend.log.completion_models)
        on_front = BrainClient(front.url, front.api_key, retries=0)
        # the backend's own chat API, with a user it has never seen: the reference conversation
        on_backend = BrainClient(backend.url, BACKEND_KEY, retries=0)
        try:
            texts = ["hello there", "what is the capital of France?", "tell me a story"]
            front_replies = [(await on_front.chat(chat(t))).reply for t in texts]
            backend_replies = [(await on_backend.chat(chat(t, user="reference"))).reply for t in texts]
            assert front_replies == backend_replies
            assert all(front_replies)

            pieces, final = [], None
            async for item in on_front.chat_stream(chat("and another one")):
                if isinstance(item, ChatReply):
                    final = item
                else:
                    pieces.append(item)
            assert final is not None and "".join(pieces).strip() == final.reply

            memory = await on_front.memory(UserRef(platform="telegram", user_id="7"), "c1")
            assert [t.text for t in memory.turns if t.role == "user"] == [*texts, "and another one"]
        finally:
            await on_front.aclose()
            await on_backend.aclose()
    sent = backend.log.completion_bodies[asked:]
    assert sent and all(body["model"] == backend.model_name for body in sent)
    assert all(isinstance(body["prompt"], list) and all(isinstance(i, int) for i in body["prompt"]) for body in sent)


async def test_each_promoted_adapter_version_is_loaded_under_a_new_name(
    backend: Backend, registry: Path, tiny_model_dir: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = render(tokenizer, [{"role": "user", "content": "hello"}])
    adapters = [version_dir(registry, COMMUNITY, n) for n in (1, 2)]
    v1, v2 = (AdapterRef(COMMUNITY, n, str(path)) for n, path in zip((1, 2), adapters, strict=True))
    replica_a = RemoteEngine(backend.url, api_key=BACKEND_KEY)
    replica_b = RemoteEngine(backend.url, api_key=BACKEND_KEY)
    replica_a.start()
    replica_b.start()
    log = backend.log
    try:
        _, first = await collect(replica_a.generate(ids, GREEDY, adapter=v1))
        assert first.tokens > 0
        assert log.adapters["community@1"] == str(adapters[0]) and log.completion_models[-1] == "community@1"

        # a promotion: the new version gets its own name, and from then on only that name is asked for
        asked = len(log.completion_models)
        for _ in range(3):
            await collect(replica_a.generate(ids, GREEDY, adapter=v2))
        # the other replica loads the same version: the server already has it, which is fine
        await collect(replica_b.generate(ids, GREEDY, adapter=v2))
        assert log.adapters["community@2"] == str(adapters[1])
        assert log.completion_models[asked:] == ["community@2"] * 4
        assert log.loads.count("community@2") == 1

        # the server restarts and forgets adapters loaded at run time: the next request loads it again
        log.restart()
        _, again = await collect(replica_a.generate(ids, GREEDY, adapter=v2))
        assert again.tokens > 0 and log.loads.count("community@2") == 2

        await replica_a.unload_adapter("community@1")  # already gone after the restart: not an error
        await replica_a.unload_adapter("community@2")
        assert "community@2" not in log.adapters
    finally:
        await replica_a.aclose()
        await replica_b.aclose()


async def promote(store: Store, version: int, registry: Path) -> None:
    """What `trainer nightly` does on a promotion: the registry record, then the reload event."""
    assert version_dir(registry, COMMUNITY, version).is_dir()
    at = "2026-11-30T03:00:00+00:00"
    record = LiveAdapter(version=version, name=f"community@{version}", path=f"community/v{version}", promoted_at=at)
    await store.registry.set_record(COMMUNITY, record, RegistryEvent(action="promote", version=version, at=at))
    await store.registry.publish_reload(ReloadEvent(target=COMMUNITY, version=version, action="promote"))


async def test_a_promotion_reaches_the_server_under_a_new_name_and_only_that_name_is_served(
    backend: Backend, registry: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNCHAT_VLLM_API_KEY", BACKEND_KEY)
    overrides = {
        "model": {"engine": "vllm", "vllm_url": backend.url},
        "trainer": {"registry_dir": str(registry)},
        "memory": {"max_turns": 20, "max_tokens": 8000},  # no summary folds (base-model requests) meanwhile
    }
    with running_brain(tmp_path, tiny_model_dir, **overrides) as front:
        store = Store(connect(front.redis.url))
        client = BrainClient(front.url, front.api_key, retries=0)
        adapters = front.runtime.adapters
        try:
            assert (await client.chat(chat("before any adapter"))).adapter is None
            for version in (1, 2):
                await promote(store, version, registry)
                await eventually(
                    lambda v=version: (live := adapters.live.get(COMMUNITY)) is not None and live.version == v,
                    f"the reload event of version {version} reached the brain",
                )
                asked = len(backend.log.completion_models)
                replies = [await client.chat(chat(f"hello with version {version} ({i})")) for i in range(2)]
                name = f"community@{version}"
                assert [r.adapter for r in replies] == [name, name]
                assert backend.log.adapters[name] == str(version_dir(registry, COMMUNITY, version))
                # every request after the promotion names the new version, none the old one
                assert backend.log.completion_models[asked:] == [name, name]
        finally:
            await client.aclose()
            await store.close()


async def test_a_forgotten_users_adapter_is_unloaded_from_the_server(
    backend: Backend, registry: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNCHAT_VLLM_API_KEY", BACKEND_KEY)
    overrides = {"model": {"engine": "vllm", "vllm_url": backend.url}, "trainer": {"registry_dir": str(registry)}}
    ann = UserRef(platform="telegram", user_id="31")
    own = version_dir(registry, user_target(ann.key), 1)
    shutil.copytree(version_dir(registry, COMMUNITY, 1), own)
    with running_brain(tmp_path, tiny_model_dir, **overrides) as front:
        store = Store(connect(front.redis.url))
        client = BrainClient(front.url, front.api_key, retries=0)
        try:
            await client.opt_in(ann)
            assert await store.profiles.set_adapter_version(ann.key, 1)
            name = f"{user_target(ann.key)}@1"
            assert (await client.chat(chat("my own adapter, please", user="31"))).adapter == name
            assert name in backend.log.adapters

            assert (await client.forget(ann)).forgotten
            assert name not in backend.log.adapters and name in backend.log.unloads
            assert not own.exists()
        finally:
            await client.aclose()
            await store.close()


async def test_a_missing_adapter_directory_is_a_clear_error(backend: Backend, tmp_path: Path) -> None:
    engine = RemoteEngine(backend.url, api_key=BACKEND_KEY)
    engine.start()
    try:
        with pytest.raises(RemoteEngineError, match="could not load adapter 'community@9'"):
            await collect(engine.generate([1, 2, 3], GREEDY, adapter=AdapterRef("community", 9, str(tmp_path))))
    finally:
        await engine.aclose()


async def test_an_unreachable_server_is_a_clear_error_and_not_ready() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    engine = RemoteEngine(url, probe_interval_s=0.05)
    engine.start()
    try:
        with pytest.raises(RemoteEngineError, match=f"{url} is unreachable"):
            await collect(engine.generate([1, 2, 3], GREEDY))
        assert not engine.running
    finally:
        await engine.aclose()


async def test_a_wrong_key_for_the_server_is_reported(backend: Backend) -> None:
    engine = RemoteEngine(backend.url, api_key="not-the-key")
    engine.start()
    try:
        with pytest.raises(RemoteEngineError, match="401"):
            await collect(engine.generate([1, 2, 3], GREEDY))
    finally:
        await engine.aclose()


def test_engine_vllm_needs_the_server_url() -> None:
    with pytest.raises(ValueError, match="model.vllm_url is not set"):
        ModelSettings(engine="vllm")
    with pytest.raises(ValueError, match="http:// or https://"):
        RemoteEngine("vllm:8000")
    assert RemoteEngine("http://vllm:8000/v1/").base_url == "http://vllm:8000"


async def test_dry_reaches_the_server_under_llama_cpp_names_only_when_on(backend: Backend) -> None:
    engine = RemoteEngine(backend.url, api_key=BACKEND_KEY)
    engine.start()
    strong = GREEDY.model_copy(
        update={"dry_multiplier": 3.0, "dry_base": 2.0, "dry_allowed_length": 1, "dry_sequence_breakers": ["\n"]}
    )
    try:
        start = len(backend.log.completion_bodies)
        await collect(engine.generate([5, 6, 5, 6, 5, 6, 5, 6], GREEDY))
        await collect(engine.generate([5, 6, 5, 6, 5, 6, 5, 6], strong))
        plain, dry = backend.log.completion_bodies[start:]
    finally:
        await engine.aclose()
    assert not any(name.startswith("dry_") for name in plain)
    assert dry["dry_multiplier"] == 3.0 and dry["dry_base"] == 2.0 and dry["dry_allowed_length"] == 1
    assert dry["dry_sequence_breakers"] == ["\n"]
