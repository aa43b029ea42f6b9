"""The dashboard's actions on what is live, done the way `trainer rollback` and `trainer canary check` do them:
through the trainer's Registry, under the trainer's Redis lock (so an action never races a nightly run), with a
history event and a reload event that every brain follows.

The Registry is synchronous (it drives the Store through a RedisLink of its own), so each action runs in a
worker thread, never on the brain's event loop.
"""

from __future__ import annotations

from typing import Literal

from brain.adapters import COMMUNITY
from brain.settings import Settings

CanaryChoice = Literal["check", "promote", "rollback"]


class ActionRefused(Exception):
    """An action that cannot be done as asked: ``status`` says how (404 unknown, 409 conflict)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def rollback(settings: Settings, target: str, version: int | Literal["base"]) -> str:
    """Put ``version`` of ``target`` live again, or serve it with the base model; what happened, in words."""
    from trainer.nightly.link import RedisLink
    from trainer.nightly.lock import LockHeldError, TrainerLock
    from trainer.nightly.registry import Registry, RegistryError

    with RedisLink.from_settings(settings) as link:
        registry = Registry(settings.trainer.registry_dir, link, settings.trainer.keep_versions)
        if target not in registry.targets():
            raise ActionRefused(404, f"there is no target {target!r} in the registry")
        before = registry.live(target)
        try:
            with TrainerLock(link, settings.trainer.lock_ttl_s) as lock:
                after = registry.rollback(target, version, lock=lock)
        except LockHeldError as error:
            raise ActionRefused(409, f"a nightly run holds the trainer's lock; try again later ({error})") from None
        except RegistryError as error:
            raise ActionRefused(404, str(error)) from None
    was = f"v{before.version}" if before else "base"
    now = f"v{after.version}" if after else "base"
    return f"{target}: {was} -> {now}"


def decide_canary(settings: Settings, choice: CanaryChoice) -> str:
    """The community's canary now: ``check`` applies the test's verdict as a nightly run would; ``promote``
    makes it live for everyone; ``rollback`` ends it (live stays as it is)."""
    from trainer.nightly import canary
    from trainer.nightly.link import RedisLink
    from trainer.nightly.lock import LockHeldError, TrainerLock
    from trainer.nightly.registry import Registry, RegistryError

    with RedisLink.from_settings(settings) as link:
        registry = Registry(settings.trainer.registry_dir, link, settings.trainer.keep_versions)
        running = link.call(link.store.canaries.get(COMMUNITY))
        if running is None:
            raise ActionRefused(409, "no canary is running")
        try:
            with TrainerLock(link, settings.trainer.lock_ttl_s) as lock:
                if choice == "check":
                    decision = canary.check(registry, COMMUNITY, settings.trainer.canary, lock=lock)
                    if decision is None:
                        raise ActionRefused(409, "no canary is running")
                    return f"{running.name}: {decision.action}: {decision.reason}"
                if choice == "promote":
                    registry.promote(COMMUNITY, running.version, lock=lock)
                lock.check()
                link.call(link.store.canaries.clear(COMMUNITY))
        except LockHeldError as error:
            raise ActionRefused(409, f"a nightly run holds the trainer's lock; try again later ({error})") from None
        except RegistryError as error:
            raise ActionRefused(404, str(error)) from None
    done = "promoted for everyone" if choice == "promote" else "rolled back (ended; live is unchanged)"
    return f"{running.name}: {done} by the operator"
