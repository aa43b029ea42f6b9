"""Which LoRA adapter serves a request when a vLLM server generates (``model.engine: vllm``).

The same choice as :mod:`brain.adapters` (the user's own adapter while they are opted in, else a community
canary for the opted-in members in its share, else the live community adapter, else the base model), read from
the same registry record and reload events. The weights live in the vLLM server, not here: choosing a version
loads it there under its versioned name (``community@3``), and requests name it as the model. A promotion
therefore changes the name every request carries, and the server can never answer with a cached copy of the
version before.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from brain.adapters import COMMUNITY, RegistryFollower, user_target, version_dir
from brain.engine.remote import AdapterRef, RemoteEngine, RemoteEngineError, ServerUnreachable
from brain.feedback_records import Canary
from brain.registry_records import LiveAdapter, ReloadEvent
from brain.store import Store

log = logging.getLogger("brain.adapters")


class RemoteAdapters(RegistryFollower):
    """The adapter side of the brain's runtime for a remote engine: ``serving``, ``forget``, ``start``, ``stop``."""

    def __init__(
        self,
        engine: RemoteEngine,
        store: Store,
        *,
        registry_dir: str | Path,
        base_model: str,
        reconcile_s: float = 30.0,
    ):
        self.engine = engine
        self.reconcile_s = reconcile_s
        self.store = store
        self.registry_dir = Path(registry_dir).expanduser()
        self.base_model = base_model
        self.live: dict[str, LiveAdapter] = {}
        self.canaries: dict[str, Canary] = {}
        self._broken: set[str] = set()
        self._checked: set[str] = set()

    async def refresh(self) -> None:
        """Re-read what is live, and load the live community version and its canary into the server ahead of
        requests."""
        await self._read_registry()
        self._broken.clear()
        for version in sorted(self._wanted_versions(COMMUNITY)):
            await self._ensure(COMMUNITY, version)

    @asynccontextmanager
    async def serving(self, user: str | None, profile: dict[str, str] | None) -> AsyncIterator[str | None]:
        """The served name of the request's adapter (None: the base model)."""
        yield await self.choose(user, profile)

    async def forget(self, user: str) -> None:
        """A /forget: withdraw the user's adapter from the registry, from the server and from disk."""
        target = user_target(user)
        await self.store.registry.delete_record(target, history=True)
        await self.store.registry.publish_reload(ReloadEvent(target=target, version=None, action="remove"))
        for name in self.engine.loaded_adapters(target):
            try:
                await self.engine.unload_adapter(name)
            except RemoteEngineError as error:  # the server is away; it forgets run-time adapters on restart
                log.warning("could not unload %s: %s", name, error)
        shutil.rmtree(self.registry_dir / target, ignore_errors=True)

    async def _ensure(self, target: str, version: int) -> str | None:
        path = version_dir(self.registry_dir, target, version)
        ref = AdapterRef(target, version, str(path))
        if ref.served_name in self._broken:
            return None
        try:
            if ref.served_name not in self._checked:  # a version never changes: its folder is read once
                self._check(path)
                self._checked.add(ref.served_name)
            return await self.engine.ensure_adapter(ref)
        except ServerUnreachable:  # generation fails too and says so; try again with the next request
            return None
        except (RemoteEngineError, OSError, ValueError) as error:  # a bad adapter: serve without it, say why
            log.warning("cannot load adapter %s from %s: %s", ref.served_name, path, error)
            self._broken.add(ref.served_name)
            return None
