"""The model registry: versioned adapter directories on disk and, in Redis, the record of what is live.

A version is copied into a temporary directory beside its final place and renamed into place, so a
reader finds either nothing or a whole adapter. Going live is one HSET of the target's record, written
only after its directory exists, then a reload event for every brain. The record is what counts: brains
also re-read it on a timer, so a run killed between the two still reaches every brain. The newest K
versions stay on disk, and the live one always. Layout and names are shared with the brain (brain/adapters.py).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from brain.adapters import COMMUNITY, USER_PREFIX, adapter_name, user_target, version_dir
from brain.registry_records import META_FILE, Action, LiveAdapter, RegistryEvent, ReloadEvent, VersionMeta
from brain.store.ids import tombstone_member
from trainer.errors import TrainerInputError
from trainer.nightly.link import RedisLink
from trainer.nightly.lock import TrainerLock

log = logging.getLogger("trainer.registry")
VERSION_DIR = re.compile(r"^v(\d+)$")
BASE = "base"


class RegistryError(TrainerInputError):
    """A target or version that does not exist, or a rollback with nowhere to go."""


@dataclass(frozen=True)
class Purged:
    """What purge_forgotten took out of service."""

    targets: list[str] = field(default_factory=list)  # forgotten users' own targets: a report counts them only
    community_versions: list[int] = field(default_factory=list)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    def __init__(self, root: str | Path, link: RedisLink, keep: int = 5):
        self.root = Path(root).expanduser()
        self.link = link
        self.keep = keep

    @property
    def store(self) -> Any:
        return self.link.store

    def targets(self) -> list[str]:
        folders = self.root.iterdir() if self.root.is_dir() else []
        on_disk = {p.name for p in folders if p.is_dir() and not p.name.startswith(".")}
        return sorted(on_disk | set(self.records()), key=lambda t: (t != COMMUNITY, t))

    def versions(self, target: str) -> list[int]:
        folder = self.root / target
        if not folder.is_dir():
            return []
        found = (VERSION_DIR.match(p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m and (folder / m.group(0) / META_FILE).is_file())

    def meta(self, target: str, version: int) -> VersionMeta:
        return VersionMeta.read(version_dir(self.root, target, version))

    def records(self) -> dict[str, LiveAdapter]:
        return self.link.call(self.store.registry.records())

    def live(self, target: str) -> LiveAdapter | None:
        return self.link.call(self.store.registry.record(target))

    def history(self, target: str) -> list[RegistryEvent]:
        return self.link.call(self.store.registry.history(target))

    def live_version(self, target: str) -> int | None:
        record = self.live(target)
        return record.version if record else None

    def add(
        self,
        target: str,
        adapter_dir: str | Path,
        *,
        base_model: str,
        run: str | None = None,
        metrics: dict[str, float | None] | None = None,
        user_hash: str | None = None,
        user_hashes: list[str] | None = None,
    ) -> int:
        """Copy an adapter in as the target's next version (not live yet); returns the version number.
        ``user_hash`` (a user target's owner) or ``user_hashes`` (everyone the community version learned from)
        let a later /forget take the version out of service."""
        history = [e.version or 0 for e in self.history(target)]
        live = self.live_version(target) or 0
        version = max([0, live, *history, *self.versions(target)]) + 1
        final = version_dir(self.root, target, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(adapter_dir, tmp)
        (tmp / "README.md").unlink(missing_ok=True)  # peft's model card names paths of the training machine
        VersionMeta(
            target=target,
            version=version,
            created_at=now_iso(),
            base_model=base_model,
            run=run,
            metrics=metrics or {},
            user_hash=user_hash,
            user_hashes=user_hashes or [],
        ).write(tmp)
        os.rename(tmp, final)
        return version

    def promote(
        self,
        target: str,
        version: int,
        *,
        lock: TrainerLock,
        action: Action = "promote",
        user: str | None = None,
    ) -> LiveAdapter:
        """Make ``version`` live: the Redis record, the user's profile (for a user target), a reload event."""
        if version not in self.versions(target):
            raise RegistryError(f"{target} has no version {version}; it has {self._listing(target)}")
        meta = self.meta(target, version)
        previous = self.live(target)
        user = user or (previous.user if previous else None)
        if target.startswith(USER_PREFIX) and (user is None or user_target(user) != target):
            raise RegistryError(f"{target}: the user it belongs to is unknown, so their profile cannot be updated")
        lock.check()
        record = LiveAdapter(
            version=version,
            name=adapter_name(target, version),
            path=f"{target}/v{version}",
            metrics=meta.metrics,
            base_model=meta.base_model,
            promoted_at=now_iso(),
            user=user,
        )
        event = RegistryEvent(
            action=action,
            version=version,
            previous=previous.version if previous else None,
            at=record.promoted_at,
            metrics=record.metrics,
            run=meta.run,
        )
        self.link.call(self.store.registry.set_record(target, record, event))
        if user:
            self.link.call(self.store.profiles.set_adapter_version(user, version))
        self._announce(ReloadEvent(target=target, version=version, action=action))
        return record

    def rollback(self, target: str, version: int | str | None, *, lock: TrainerLock) -> LiveAdapter | None:
        """Go back to ``version``, to the version live before the current one (None), or to ``base``."""
        current = self.live(target)
        if version == BASE:
            self.unpublish(target, lock=lock, action="rollback")
            return None
        if version is None:
            if current is None:
                raise RegistryError(f"{target} has no live adapter to roll back from")
            earlier = [v for v in self._once_live(target) if v < current.version]
            if not earlier:
                raise RegistryError(
                    f"{target} has no earlier version on disk to roll back to (versions: {self._listing(target)}); "
                    f"use `{BASE}` to serve without it"
                )
            version = earlier[-1]
        return self.promote(target, int(version), lock=lock, action="rollback")

    def unpublish(self, target: str, *, lock: TrainerLock, action: Action) -> None:
        """Take the target's adapter out of service (its versions stay on disk)."""
        current = self.live(target)
        lock.check()
        if current and current.user:
            self.link.call(self.store.profiles.set_adapter_version(current.user, None))
        previous = current.version if current else None
        event = RegistryEvent(action=action, version=None, previous=previous, at=now_iso())
        self.link.call(self.store.registry.delete_record(target, event=event))
        self._announce(ReloadEvent(target=target, version=None, action=action))

    def prune(self, target: str) -> list[int]:
        """Delete all but the newest K versions, never the live one nor a running canary; returns the deleted
        versions."""
        canary = self.link.call(self.store.canaries.get(target))
        serving = {self.live_version(target), canary.version if canary else None}
        versions = self.versions(target)
        doomed = [v for v in versions[: max(0, len(versions) - self.keep)] if v not in serving]
        for v in doomed:
            shutil.rmtree(version_dir(self.root, target, v), ignore_errors=True)
        for leftover in (self.root / target).glob(".tmp-*"):  # from a run killed while copying
            shutil.rmtree(leftover, ignore_errors=True)
        return doomed

    def remove(self, target: str) -> None:
        """Delete a target entirely: its record, its history and every version (a forgotten user's)."""
        current = self.live(target)
        self.link.call(self.store.registry.delete_record(target, history=True))
        if current and current.user:
            self.link.call(self.store.profiles.set_adapter_version(current.user, None))
        shutil.rmtree(self.root / target, ignore_errors=True)
        self._announce(ReloadEvent(target=target, version=None, action="remove"))

    def purge_forgotten(self, *, lock: TrainerLock) -> Purged:
        """Remove every adapter that learned from a user who has since been forgotten: their own target,
        and each community version trained on their data."""
        owners = self._user_target_owners()
        trained_on = {v: set(self.meta(COMMUNITY, v).user_hashes) for v in self.versions(COMMUNITY)}
        gone = self.link.call(self.store.tombstones.tombstoned(sorted(set(owners).union(*trained_on.values()))))
        targets = sorted(owners[member] for member in gone & set(owners))
        for target in targets:
            self.remove(target)
        tainted = [v for v, members in trained_on.items() if members & gone]
        self._retire_community(tainted, lock=lock)
        return Purged(targets=targets, community_versions=tainted)

    def _user_target_owners(self) -> dict[str, str]:
        """Each user target by its owner's tombstone member (the hash of the user id)."""
        records = self.records()
        owners: dict[str, str] = {}
        for target in self.targets():
            if not target.startswith(USER_PREFIX):
                continue
            record = records.get(target)
            user = record.user if record else None
            metas = (self.meta(target, v) for v in self.versions(target))
            member = tombstone_member(user) if user else next((m.user_hash for m in metas if m.user_hash), None)
            if member:
                owners[member] = target
        return owners

    def _retire_community(self, versions: list[int], *, lock: TrainerLock) -> None:
        """Delete these community versions. A live one is first replaced by the newest other version that
        has been live, else taken out of service (the base model serves); a canary among them ends."""
        canary = self.link.call(self.store.canaries.get(COMMUNITY))
        if canary is not None and canary.version in versions:
            lock.check()
            self.link.call(self.store.canaries.clear(COMMUNITY))
        if self.live_version(COMMUNITY) in versions:
            clean = [v for v in self._once_live(COMMUNITY) if v not in versions]
            if clean:
                self.promote(COMMUNITY, clean[-1], lock=lock, action="forget")
            else:
                self.unpublish(COMMUNITY, lock=lock, action="forget")
        for v in versions:  # only once no record points at them
            shutil.rmtree(version_dir(self.root, COMMUNITY, v), ignore_errors=True)

    def _announce(self, event: ReloadEvent) -> None:
        """Tell every brain to reload now. The record already counts: a brain that never hears this reads
        the record on its next reconcile (trainer.reload_reconcile_s), so a failure here changes nothing else."""
        try:
            self.link.call(self.store.registry.publish_reload(event))
        except RedisError as error:
            log.warning("the reload event %s was not sent (%s); brains pick the change up when they reconcile",
                        event, error)  # fmt: skip

    def _once_live(self, target: str) -> list[int]:
        """The versions on disk that have been live at some time, oldest first."""
        been_live = {e.version for e in self.history(target) if e.version}
        return [v for v in self.versions(target) if v in been_live]

    def _listing(self, target: str) -> str:
        versions = self.versions(target)
        return ", ".join(f"v{v}" for v in versions) if versions else "none"
