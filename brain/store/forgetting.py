"""/forget: the one place that lists everything a member owns in Redis, and deletes it all.

A forget leaves a tombstone first (Tombstones: an export racing it already sees the member as forgotten), then
deletes every key of the member (``member_keys``: profile and consent, chat memory, facts, training log, rate
counter, idempotency keys and kept replies, turns kept to be rated, the ratings they gave, the list of personas they
wrote) with the memory of each chat they have (``oc:turns`` and ``oc:summary`` of every chat in ``oc:chats``), in one
script; it takes them out of the global sets (known users, opted in, logged, raters); it deletes what other slots
hold of them: the group personas and persona versions they wrote (Personas.delete_authored), the ``oc:turnof`` keys
of their turns and the ``oc:msgturn`` entries that point at them (Turns.unlink), and the ratings others gave their
replies (Ratings.unrate: the like counts, counted from kept ratings, drop with them and with their own ratings).
The registry's side (their adapter, its history and what run summaries say of it) is the trainer's to remove
(Registry.delete_record). ``/optout delete`` deletes the user's log and ratings (Profiles.opt_out).
"""

from __future__ import annotations

from typing import Any

from brain.store import keys, scripts
from brain.store.client import now_ms
from brain.store.personas import Personas
from brain.store.ratings import Ratings
from brain.store.tombstones import Tombstones
from brain.store.turns import Turns


def member_keys(user: str) -> list[str]:
    """The user's keys that are not per chat, in the order the forget script takes them."""
    return [
        keys.profile(user), keys.chats(user), keys.log(user), keys.rate(user), keys.authored(user),
        keys.earlier(user), keys.facts(user), keys.requests(user), keys.turn_records(user), keys.turn_order(user),
        keys.ratings(user), keys.rating_order(user), keys.replied(user),
    ]  # fmt: skip


# the global sets a member is listed in
MEMBER_SETS = (keys.USERS, keys.LOGGED_USERS, keys.OPTED_IN, keys.RATERS)


class Forgetting:
    """Deletes a member's data from every concern of the store."""

    def __init__(self, client: Any, tombstones: Tombstones, personas: Personas, ratings: Ratings, turns: Turns):
        self.r = client
        self.tombstones = tombstones
        self.personas = personas
        self.ratings = ratings
        self.turns = turns
        self._forget = scripts.register(client, "forget")

    async def user_keys(self, user: str) -> list[str]:
        """Every key of the user's own (all in the user's slot): member_keys and each chat's memory."""
        chats = await self.r.smembers(keys.chats(user))
        user_keys = member_keys(user)
        for chat in chats:
            user_keys += [keys.turns(user, chat), keys.summary(user, chat)]
        return user_keys

    async def forget(self, user: str) -> int:
        """Delete every key of the user and the group personas they authored, and leave a tombstone (a hash
        of the id, with the time). Returns how many keys were deleted."""
        pipe = self.r.pipeline(transaction=False)
        # the tombstone first: an export racing this call already sees the user as forgotten
        await self.tombstones.queue_add(pipe, user, now_ms())
        pipe.smembers(keys.authored(user))
        _, authored = await pipe.execute()
        # the personas before the set that lists them: a crash in between leaves them findable
        deleted = await self.personas.delete_authored(user, authored)
        pipe = self.r.pipeline(transaction=False)
        scripts.queue(pipe, self._forget, member_keys(user), [keys.turns(user, ""), keys.summary(user, "")])
        for name in MEMBER_SETS:
            pipe.srem(name, user)
        (removed, n_listed, *rest), *_ = await pipe.execute()
        listed, turns = rest[: int(n_listed)], rest[int(n_listed) :]
        late = set(listed) - set(authored)  # set by the user while this ran
        deleted += int(removed) + await self.personas.delete_authored(user, late)
        await self.ratings.unrate(sorted({t[2] for t in (line.split("\t") for line in turns) if len(t) == 3}))
        return deleted + await self.turns.unlink(turns)
