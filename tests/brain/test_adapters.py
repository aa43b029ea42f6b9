"""Adapters in the brain: resolution per user, mixed-adapter batches, reload without dropping requests, LRU."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from brain.adapters import COMMUNITY, AdapterManager, user_target, version_dir
from brain.engine.batching import Engine, GenerationRequest
from brain.engine.model_loading import LoadedModel, load_serving_model
from brain.registry_records import LiveAdapter, RegistryEvent, ReloadEvent, VersionMeta
from brain.store import Store
from brain.store.client import connect

PROMPT = [5, 17, 42, 99, 7, 3, 250]
NOW = "2026-11-30T03:00:00+00:00"


def make_adapter(model_dir: Path, registry: Path, target: str, version: int, *, seed: int, base: str) -> Path:
    """A random (not zero) LoRA adapter in the registry layout, so that it visibly changes the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=4, lora_alpha=32, init_lora_weights=False, target_modules=["q_proj", "v_proj"])
    out = version_dir(registry, target, version)
    get_peft_model(model, config).save_pretrained(out)
    VersionMeta(target=target, version=version, created_at=NOW, base_model=base).write(out)
    return out


async def publish(store: Store, target: str, version: int, user: str | None = None) -> None:
    record = LiveAdapter(version=version, name=f"{target}@{version}", path=f"{target}/v{version}", promoted_at=NOW)
    await store.registry.set_record(target, record, RegistryEvent(action="promote", version=version, at=NOW))
    if user:
        await store.profiles.set_adapter_version(user, version)
    await store.registry.publish_reload(ReloadEvent(target=target, version=version, action="promote"))


@pytest.fixture
async def store(redis_server):
    s = Store(connect(redis_server.url))
    yield s
    await s.close()


@pytest.fixture
def loaded(tiny_model_dir: Path, tmp_path: Path) -> LoadedModel:
    # a model of this test's own: adapters are injected into it in place
    return load_serving_model(str(tiny_model_dir), cache_dir=tmp_path / "cache")


@pytest.fixture
async def serving(loaded: LoadedModel, store: Store, tmp_path: Path, tiny_model_dir: Path):
    steps: list[int] = []
    engine = Engine(
        loaded.model, max_batch_size=8, eos_token_ids=set(), device=loaded.device, on_step=lambda r, t: steps.append(r)
    )
    engine.start()
    manager = AdapterManager(
        loaded.model, store, registry_dir=tmp_path / "registry", base_model=str(tiny_model_dir), capacity=2,
        engine=engine,
    )  # fmt: skip
    manager.steps = steps
    yield manager
    await manager.stop()
    engine.stop()


async def generate(engine: Engine, adapter: str | None, tokens: int = 12) -> list[int]:
    handle = engine.submit(GenerationRequest(prompt_ids=PROMPT, max_new_tokens=tokens, adapter=adapter))
    return [t async for t in handle]


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_each_request_is_served_with_its_users_adapter_else_the_community_one(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry, base = tmp_path / "registry", str(tiny_model_dir)
    ann, bob = "telegram:1", "telegram:2"
    await store.profiles.opt_in(ann, "v1")
    await store.profiles.opt_in(bob, "v1")
    assert await serving.acquire(ann, await store.profiles.get(ann)) is None  # nothing live: the base model

    make_adapter(tiny_model_dir, registry, COMMUNITY, 1, seed=1, base=base)
    make_adapter(tiny_model_dir, registry, user_target(ann), 1, seed=2, base=base)
    await publish(store, COMMUNITY, 1)
    await publish(store, user_target(ann), 1, user=ann)
    await serving.refresh()

    assert await serving.acquire(ann, await store.profiles.get(ann)) == f"{user_target(ann)}@1"
    assert await serving.acquire(bob, await store.profiles.get(bob)) == "community@1"
    assert await serving.acquire(None, None) == "community@1"
    await store.profiles.opt_out(ann, delete_logs=False)  # personalization off: the community adapter serves her
    assert await serving.acquire(ann, await store.profiles.get(ann)) == "community@1"


async def test_one_batch_serves_several_adapters_each_with_its_own(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry, base, ann = tmp_path / "registry", str(tiny_model_dir), "telegram:1"
    await store.profiles.opt_in(ann, "v1")
    make_adapter(tiny_model_dir, registry, COMMUNITY, 1, seed=1, base=base)
    make_adapter(tiny_model_dir, registry, user_target(ann), 1, seed=2, base=base)
    await publish(store, COMMUNITY, 1)
    await publish(store, user_target(ann), 1, user=ann)
    await serving.refresh()
    names = [await serving.acquire(ann, await store.profiles.get(ann)), await serving.acquire(None, None), None]
    engine = serving.engine

    alone = [await generate(engine, name) for name in names]
    serving.steps.clear()
    together = await asyncio.gather(*(generate(engine, name) for name in names))

    assert max(serving.steps) == 3, "the three requests never shared a batch"
    assert together == alone
    assert len({tuple(reply) for reply in alone}) == 3, "an adapter did not change the replies"


async def test_reload_swaps_versions_without_dropping_requests_in_flight(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry, base = tmp_path / "registry", str(tiny_model_dir)
    make_adapter(tiny_model_dir, registry, COMMUNITY, 1, seed=1, base=base)
    make_adapter(tiny_model_dir, registry, COMMUNITY, 2, seed=3, base=base)
    await publish(store, COMMUNITY, 1)
    serving.start()  # follows the reload channel
    await wait_for(lambda: "community@1" in serving.loaded)
    engine = serving.engine
    v1_alone = await generate(engine, "community@1", tokens=40)

    async with serving.serving(None, None) as name:
        assert name == "community@1"
        running = asyncio.create_task(generate(engine, name, tokens=40))
        await publish(store, COMMUNITY, 2)  # the nightly run promotes v2 meanwhile
        await wait_for(lambda: "community@2" in serving.loaded)
        assert await serving.acquire(None, None) == "community@2"  # new requests get the new version
        assert await running == v1_alone  # the old request finished, on the old version
        assert "community@1" in engine.model.peft_config
    await wait_for(lambda: "community@1" not in engine.model.peft_config)  # unloaded once idle
    assert await generate(engine, "community@2", tokens=40) != v1_alone


async def test_user_adapters_live_in_a_bounded_lru(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry, base = tmp_path / "registry", str(tiny_model_dir)
    users = [f"telegram:{i}" for i in range(3)]
    for index, user in enumerate(users):
        await store.profiles.opt_in(user, "v1")
        make_adapter(tiny_model_dir, registry, user_target(user), 1, seed=10 + index, base=base)
        await publish(store, user_target(user), 1, user=user)
    await serving.refresh()

    for user in users:
        await serving.release(await serving.acquire(user, await store.profiles.get(user)))

    loaded = set(serving.engine.model.peft_config)
    assert loaded == {f"{user_target(u)}@1" for u in users[1:]}, "capacity 2: the least recently used left"


async def test_forget_withdraws_the_users_adapter_at_once(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry, base, ann = tmp_path / "registry", str(tiny_model_dir), "telegram:1"
    await store.profiles.opt_in(ann, "v1")
    folder = make_adapter(tiny_model_dir, registry, user_target(ann), 1, seed=2, base=base).parent
    await publish(store, user_target(ann), 1, user=ann)
    await serving.refresh()
    assert await serving.acquire(ann, await store.profiles.get(ann)) == f"{user_target(ann)}@1"

    await store.forgetting.forget(ann)
    await serving.forget(ann)

    assert await serving.acquire(ann, await store.profiles.get(ann)) is None
    assert not folder.exists()
    assert await store.registry.record(user_target(ann)) is None


async def test_an_adapter_trained_on_another_base_model_is_not_served(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    make_adapter(tiny_model_dir, tmp_path / "registry", COMMUNITY, 1, seed=1, base="some-other-model")
    await publish(store, COMMUNITY, 1)
    await serving.refresh()
    assert await serving.acquire(None, None) is None


async def test_a_brain_that_missed_the_reload_event_serves_the_live_version_after_the_reconcile_interval(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry, base = tmp_path / "registry", str(tiny_model_dir)
    make_adapter(tiny_model_dir, registry, COMMUNITY, 1, seed=1, base=base)
    make_adapter(tiny_model_dir, registry, COMMUNITY, 2, seed=3, base=base)
    await publish(store, COMMUNITY, 1)
    serving.reconcile_s = 0.3
    serving.start()
    await wait_for(lambda: "community@1" in serving.loaded)

    # what a trainer killed between writing the live record and publishing leaves: the record, no event
    record = LiveAdapter(version=2, name="community@2", path="community/v2", promoted_at=NOW)
    await store.registry.set_record(COMMUNITY, record, RegistryEvent(action="promote", version=2, at=NOW))

    await wait_for(lambda: "community@2" in serving.loaded)
    assert await serving.acquire(None, None) == "community@2"
    await wait_for(lambda: "community@1" not in serving.engine.model.peft_config)
