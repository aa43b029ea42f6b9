"""A canary: a candidate that passed the gate serves a share of opted-in members, the same members on every
replica and on every message, until the trainer promotes it or rolls it back."""

from __future__ import annotations

from pathlib import Path

from brain.adapters import COMMUNITY, AdapterManager
from brain.feedback_records import Canary
from brain.store import Store
from tests.brain.test_adapters import NOW, loaded, make_adapter, publish, serving, store, wait_for

__all__ = ["loaded", "serving", "store"]  # fixtures shared with the adapter tests

MEMBERS = [f"telegram:{i}" for i in range(60)]


def a_canary(share: float) -> Canary:
    return Canary(target=COMMUNITY, version=2, name="community@2", path="community/v2", share=share,
                  min_ratings=10, started_at=NOW)  # fmt: skip


async def served(manager: AdapterManager, store: Store, users: list[str]) -> dict[str, str | None]:
    out = {}
    for user in users:
        name = await manager.acquire(user, await store.profiles.get(user))
        await manager.release(name)
        out[user] = name
    return out


async def test_a_canary_serves_a_sticky_share_of_opted_in_members_only(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry, base = tmp_path / "registry", str(tiny_model_dir)
    make_adapter(tiny_model_dir, registry, COMMUNITY, 1, seed=1, base=base)
    make_adapter(tiny_model_dir, registry, COMMUNITY, 2, seed=2, base=base)
    await publish(store, COMMUNITY, 1)
    opted_in, not_in = MEMBERS[:40], MEMBERS[40:]
    for user in opted_in:
        await store.profiles.opt_in(user, "v1")
    await store.canaries.set(a_canary(0.5))
    await serving.refresh()

    first = await served(serving, store, MEMBERS)
    in_canary = {user for user, name in first.items() if name == "community@2"}
    assert 8 <= len(in_canary) <= 32, "about half of the opted-in members get the canary"
    assert in_canary <= set(opted_in), "members not opted in never get it"
    assert {first[user] for user in opted_in if user not in in_canary} | {first[u] for u in not_in} == {"community@1"}
    assert await served(serving, store, MEMBERS) == first, "the same members, message after message"

    # another replica of the brain, following the same registry, picks the same members
    other = AdapterManager(
        serving.base, store, registry_dir=registry, base_model=base, engine=serving.engine, capacity=2
    )  # fmt: skip
    other.live, other.loaded, other.peft = serving.live, serving.loaded, serving.peft
    other.canaries = await store.canaries.all()
    assert await served(other, store, MEMBERS) == first

    # a wider share keeps everyone who had it
    await store.canaries.set(a_canary(0.9))
    await serving.refresh()
    wider = await served(serving, store, MEMBERS)
    assert in_canary <= {user for user, name in wider.items() if name == "community@2"}


async def test_a_cleared_canary_serves_nobody_and_is_unloaded(
    serving: AdapterManager, store: Store, tmp_path: Path, tiny_model_dir: Path
) -> None:
    registry, base = tmp_path / "registry", str(tiny_model_dir)
    make_adapter(tiny_model_dir, registry, COMMUNITY, 1, seed=1, base=base)
    make_adapter(tiny_model_dir, registry, COMMUNITY, 2, seed=2, base=base)
    await publish(store, COMMUNITY, 1)
    for user in MEMBERS:
        await store.profiles.opt_in(user, "v1")
    serving.start()
    await wait_for(lambda: "community@1" in serving.loaded)

    await store.canaries.set(a_canary(1.0))  # the reload event reaches the running brain
    await wait_for(lambda: "community@2" in serving.loaded)
    assert set((await served(serving, store, MEMBERS)).values()) == {"community@2"}

    await store.canaries.clear(COMMUNITY)  # rolled back
    await wait_for(lambda: "community@2" not in serving.loaded)
    assert set((await served(serving, store, MEMBERS)).values()) == {"community@1"}
