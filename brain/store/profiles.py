"""A member's profile: who they are to the bot, their consent to training (opt in, opt out, agreeing to
comparisons) and the adapter trained for them. The consent semantics themselves are in brain/consent.py."""

from __future__ import annotations

from typing import Any

from brain.store import keys, scripts
from brain.store.client import now_ms

# the profile field of a member's agreement to comparisons: the consent_at of the opt-in it was given under
COMPARE_FIELD = "compare_for"


def agreed_to_compare(profile: dict[str, str]) -> bool:
    """Opted in, and agreed to comparisons since that opt-in (Profiles.agree_to_compare)."""
    return (
        profile.get("consent") == "in"
        and bool(profile.get(COMPARE_FIELD))
        and (profile.get(COMPARE_FIELD) == profile.get("consent_at"))
    )


class Profiles:
    """The ``oc:profile`` hash of each member, and the global sets that list members by consent."""

    def __init__(self, client: Any):
        self.r = client
        self._update = scripts.register(client, "update_profile")
        self._set_adapter_version = scripts.register(client, "set_adapter_version")

    async def get(self, user: str) -> dict[str, str]:
        return await self.r.hgetall(keys.profile(user))

    async def opt_in(self, user: str, version: str) -> int:
        at = now_ms()
        fields = {"consent": "in", "consent_version": version, "consent_at": at}
        await self.update(user, fields, at=at, users=(keys.USERS, keys.OPTED_IN))
        return at

    async def opt_out(self, user: str, *, delete_logs: bool) -> int:
        at = now_ms()
        unlisted = (keys.OPTED_IN, keys.LOGGED_USERS, keys.RATERS) if delete_logs else (keys.OPTED_IN,)
        await self.update(user, {"consent": "out", "consent_at": at}, at=at, delete_log=delete_logs,
                          unlisted=unlisted)  # fmt: skip
        return at

    async def agree_to_compare(self, user: str, agreed: bool) -> bool:
        """Record (or withdraw) the member's agreement to be asked which of two replies they prefer. It holds for
        their present opt-in only: it names the opt-in's time, so an opt-out ends it and a later opt-in asks
        again. False (nothing changed) for a member who is not opted in."""
        consent, consent_at = await self.r.hmget(keys.profile(user), ["consent", "consent_at"])
        if consent != "in":
            return False
        await self.r.hset(keys.profile(user), COMPARE_FIELD, consent_at if agreed else "")
        return True

    async def set_adapter_version(self, user: str, version: int | None) -> bool:
        """Point the user's profile at their adapter (None removes it); False when the user has no profile."""
        value = "" if version is None else str(version)
        return bool(int(await self._set_adapter_version(keys=[keys.profile(user)], args=[value])))

    async def update(
        self,
        user: str,
        fields: dict[str, Any],
        *,
        at: int | None = None,
        delete_log: bool = False,
        users: tuple[str, ...] = (),
        unlisted: tuple[str, ...] = (),
    ) -> None:
        """Set profile fields (creating the profile where there is none) in one script, then the global sets:
        listed in ``users``, taken out of ``unlisted``. ``delete_log`` deletes the training log and the ratings."""
        pipe = self.r.pipeline(transaction=False)
        args: list[Any] = [at or now_ms(), "1" if delete_log else "0"]
        for name, value in fields.items():
            args += [name, value]
        profile_keys = [keys.profile(user), keys.log(user), keys.ratings(user), keys.rating_order(user)]
        scripts.queue(pipe, self._update, profile_keys, args)
        for name in users:
            pipe.sadd(name, user)
        for name in unlisted:
            pipe.srem(name, user)
        await pipe.execute()
