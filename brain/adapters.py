"""LoRA adapters in the brain: which one serves a request, loaded from the registry, swapped in on reload.

The registry (written by ``trainer nightly``) is a directory of versioned adapters plus, in Redis, the record
of each target's live version and a channel of reload events:

    <registry_dir>/community/v3/            adapter_config.json, adapter_model.safetensors, meta.json
    <registry_dir>/user-<hash>/v1/          one user's own adapter (hash: see user_target)

A request is served with its user's adapter (the version in their profile, so a /forget stops it at once),
else, for an opted-in member whom the stable hash of their id puts in a running canary's share
(``oc:registry:canary``, written by the trainer: a candidate that passed the gate), the canary's version, else
the live community adapter, else the base model. The same members keep the canary for as long as it runs;
members not opted in never get it, since their ratings could not judge it.

Loaded adapters live side by side in one peft model under versioned names such as ``community@3``; the engine
passes each row's name to the forward pass (peft's mixed-adapter batches), so one batch serves several
adapters. A reload loads the new version next to the old one: requests already running finish on the old one,
which is unloaded once no request uses it. Per-user adapters are kept in an LRU of a configured size.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from brain.consent import is_opted_in
from brain.feedback_records import Canary
from brain.registry_records import META_FILE, LiveAdapter, ReloadEvent, VersionMeta
from brain.store import Store
from brain.store.ids import tombstone_member

log = logging.getLogger("brain.adapters")

COMMUNITY = "community"
USER_PREFIX = "user-"


def user_target(user: str) -> str:
    """A user's registry target: a hash of their id, like their tombstone, so no directory names them."""
    return target_of_member(tombstone_member(user))


def target_of_member(member: str) -> str:
    """The registry target of the user whose tombstone member (hash of the id) this is."""
    return USER_PREFIX + member[:16]


def canary_position(user: str) -> float:
    """Where a member falls in [0, 1) for canaries: a stable hash of their id, so that a canary with a share s
    serves the same members (those below s) on every replica and for as long as it runs."""
    digest = hashlib.sha256(f"canary:{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def version_dir(registry_dir: str | Path, target: str, version: int) -> Path:
    return Path(registry_dir).expanduser() / target / f"v{version}"


def adapter_name(target: str, version: int) -> str:
    """The name of a loaded adapter, also what ChatReply.adapter shows: ``community@3``."""
    return f"{target}@{version}"


class AdapterBackend(Protocol):
    """What the service needs of adapter management, whichever engine holds the weights (AdapterManager here,
    RemoteAdapters in brain/engine/remote_adapters.py for a vLLM server)."""

    live: dict[str, LiveAdapter]  # target -> its live registry record
    canaries: dict[str, Canary]  # target -> the candidate serving a share of its members

    def start(self) -> None:
        """Read the registry and follow it (call from the running event loop)."""
        ...

    async def stop(self) -> None: ...

    def serving(self, user: str | None, profile: dict[str, str] | None) -> AbstractAsyncContextManager[str | None]:
        """The adapter name for a request (None: the base model), held loaded until the block ends."""
        ...

    async def forget(self, user: str) -> None:
        """A /forget: withdraw the user's own adapter from every brain."""
        ...


class RegistryFollower:
    """Re-reads what is live at start, after every reload event and on a timer, riding out Redis outages.

    The timer catches what no event announced: a trainer killed between writing the live record and
    publishing, or an event sent while this brain was cut off from Redis. Such a change reaches this brain
    within ``reconcile_s`` (``trainer.reload_reconcile_s``)."""

    store: Store
    base_model: str
    reconcile_s: float = 30.0
    _tasks: tuple[asyncio.Task, ...] = ()
    _refreshing: asyncio.Lock | None = None

    def start(self) -> None:
        """Follow the registry's reload events, and reconcile on a timer (call from the running event loop)."""
        loop = asyncio.get_running_loop()
        self._refreshing = asyncio.Lock()
        self._tasks = (loop.create_task(self._follow_reloads()), loop.create_task(self._reconcile_forever()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = ()

    async def _follow_reloads(self, retry_s: float = 1.0) -> None:
        while True:
            try:
                # re-read once subscribed (on every reconnect too): nothing published meanwhile is missed
                async for event in self.store.registry.reload_events(on_subscribed=self._refresh_once):
                    log.info("registry event %s", event)
                    await self._refresh_once()
                    retry_s = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis away: keep serving what is loaded, retry, then re-read
                log.warning("following registry reloads failed (%s); retrying in %.0f s", error, retry_s)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, 30.0)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_s)
            try:
                if await self.store.registry.records() != self.live or await self.store.canaries.all() != self.canaries:
                    log.warning("the registry changed without a reload event reaching this brain; reloading")
                    await self._refresh_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis away: the event listener says so; try again next time
                log.debug("reconciling with the registry failed: %s", error)

    async def _refresh_once(self) -> None:
        """refresh(), never two at once (the event listener and the timer may both ask)."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            await self.refresh()

    live: dict[str, LiveAdapter]
    canaries: dict[str, Canary]

    async def refresh(self) -> None:
        raise NotImplementedError

    async def _read_registry(self) -> None:
        self.live = await self.store.registry.records()
        self.canaries = await self.store.canaries.all()

    def _wanted_versions(self, target: str) -> set[int]:
        """The versions of a target that may serve: the live one and a running canary's."""
        record, canary = self.live.get(target), self.canaries.get(target)
        return {v.version for v in (record, canary) if v is not None}

    async def _ensure(self, target: str, version: int) -> str | None:
        """The served name of that adapter version, loaded first where needed (None if it cannot be)."""
        raise NotImplementedError

    def _check(self, path: Path) -> None:
        if not (path / META_FILE).is_file():
            raise FileNotFoundError(f"{path} holds no adapter (no {META_FILE})")
        trained_on = VersionMeta.read(path).base_model
        if trained_on != self.base_model:
            raise ValueError(f"it was trained on {trained_on!r}, but this brain serves {self.base_model!r}")

    async def choose(self, user: str | None, profile: dict[str, str] | None) -> str | None:
        """The user's own adapter while they are opted in and have one, else the community canary for an opted-in
        member in its share, else the live community one, else None."""
        profile = profile or {}
        name = None
        version = profile.get("adapter_version")
        opted_in = is_opted_in(profile)
        if user and version and opted_in:
            name = await self._ensure(user_target(user), int(version))
        canary = self.canaries.get(COMMUNITY)
        if name is None and canary and user and opted_in and canary_position(user) < canary.share:
            name = await self._ensure(COMMUNITY, canary.version)
        community = self.live.get(COMMUNITY)
        if name is None and community:
            name = await self._ensure(COMMUNITY, community.version)
        return name


@dataclass
class _Loaded:
    target: str
    version: int
    in_use: int = 0
    stale: bool = False  # replaced or withdrawn: unloaded once no request uses it


class AdapterManager(RegistryFollower):
    """Which adapter serves a request, and the peft model that holds the loaded ones.

    ``engine`` is the generation engine (anything with a ``model`` attribute and an async
    ``between_steps(fn)``): adapters are added to and removed from the model only between two of its
    steps, and the engine's model becomes the peft model that wraps the base once the first adapter loads.
    Without a model (generation on a remote server) every request is served by the base model.
    """

    def __init__(
        self,
        model: Any,
        store: Store,
        *,
        registry_dir: str | Path,
        base_model: str,
        capacity: int = 8,
        engine: Any = None,
        reconcile_s: float = 30.0,
    ):
        self.base = model
        self.reconcile_s = reconcile_s
        self.peft: Any = None
        self.store = store
        self.registry_dir = Path(registry_dir).expanduser()
        self.base_model = base_model
        self.capacity = capacity
        self.engine = engine
        self.live: dict[str, LiveAdapter] = {}
        self.canaries: dict[str, Canary] = {}
        self.loaded: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first
        self._broken: set[str] = set()
        self._loading = asyncio.Lock()

    def start(self) -> None:
        """Read the registry and follow its reload events (call from the running event loop)."""
        if self.base is not None:
            super().start()

    async def refresh(self) -> None:
        """Re-read what is live; mark replaced versions stale and load the live community adapter and its canary."""
        await self._read_registry()
        self._broken.clear()
        for name, entry in list(self.loaded.items()):
            if entry.version not in self._wanted_versions(entry.target):
                entry.stale = True
                await self._unload_if_idle(name)
        for version in sorted(self._wanted_versions(COMMUNITY)):
            await self._ensure(COMMUNITY, version)
        for name in [name for name, entry in self.loaded.items() if entry.stale]:
            await self._unload_if_idle(name)  # a replaced one that was the only adapter loaded a moment ago

    # serving

    @asynccontextmanager
    async def serving(self, user: str | None, profile: dict[str, str] | None) -> AsyncIterator[str | None]:
        """The adapter name for a request (None: the base model), held loaded until the block ends."""
        name = await self.acquire(user, profile)
        try:
            yield name
        finally:
            await self.release(name)

    async def acquire(self, user: str | None, profile: dict[str, str] | None) -> str | None:
        """The user's adapter if they are opted in and have one, else the community's, else None."""
        if self.base is None:
            return None
        name = await self.choose(user, profile)
        if name is not None:
            self.loaded[name].in_use += 1  # no await since _ensure returned: it is still loaded
        return name

    async def release(self, name: str | None) -> None:
        if name is not None and name in self.loaded:
            self.loaded[name].in_use -= 1
            await self._unload_if_idle(name)

    async def forget(self, user: str) -> None:
        """A /forget: withdraw the user's adapter from every brain and delete its files where we may."""
        target = user_target(user)
        await self.store.registry.delete_record(target, history=True)
        await self.store.registry.publish_reload(ReloadEvent(target=target, version=None, action="remove"))
        for name, entry in list(self.loaded.items()):
            if entry.target == target:
                entry.stale = True
                await self._unload_if_idle(name)
        shutil.rmtree(self.registry_dir / target, ignore_errors=True)  # else the next nightly run does it

    # loading and unloading, always between engine steps

    async def _ensure(self, target: str, version: int) -> str | None:
        name = adapter_name(target, version)
        if name in self.loaded and not self.loaded[name].stale:
            self.loaded.move_to_end(name)
            return name
        if name in self._broken:
            return None
        async with self._loading:
            if name not in self.loaded:
                path = version_dir(self.registry_dir, target, version)
                try:
                    self._check(path)
                    await self._between_steps(lambda: self._load(name, path))
                except Exception as error:  # a missing or foreign adapter: serve without it
                    log.warning("cannot load adapter %s from %s: %s", name, path, error)
                    self._broken.add(name)
                    return None
                self.loaded[name] = _Loaded(target, version)
            self.loaded[name].stale = False
            self.loaded.move_to_end(name)
            await self._evict(protect=name)
        return name if name in self.loaded else None

    def _load(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if self.peft is None:
            with warnings.catch_warnings():  # peft asks transformers a deprecated question; nothing for us to change
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                self.peft = PeftModel.from_pretrained(self.base, str(path), adapter_name=name)
            if self.engine is not None:
                self.engine.model = self.peft  # from now on the engine passes each row's adapter name
        else:
            self.peft.load_adapter(str(path), adapter_name=name)
        self.peft.eval()  # fresh LoRA layers start in training mode (dropout on)

    async def _evict(self, protect: str) -> None:
        """Unload the least recently used idle user adapters beyond the capacity."""
        users = [name for name, entry in self.loaded.items() if entry.target != COMMUNITY]
        for name in users[: max(0, len(users) - self.capacity)]:
            if name != protect and name in self.loaded and self.loaded[name].in_use == 0:
                self.loaded[name].stale = True
                await self._unload_if_idle(name)

    async def _unload_if_idle(self, name: str) -> None:
        entry = self.loaded.get(name)
        if entry is None or not entry.stale or entry.in_use > 0:
            return
        if len(self.loaded) == 1:
            return  # a peft model needs one adapter; an unused one costs little and serves nobody
        del self.loaded[name]
        await self._between_steps(lambda: self._delete(name))

    def _delete(self, name: str) -> None:
        with warnings.catch_warnings():  # "the active adapter was deleted": rows name theirs, none is active
            warnings.simplefilter("ignore", UserWarning)
            self.peft.delete_adapter(name)

    async def _between_steps(self, change: Callable[[], Any]) -> Any:
        if self.engine is not None and getattr(self.engine, "running", False):
            return await self.engine.between_steps(change)
        return change()
