"""Every Redis read and write of ownchat: one repository per concern, composed by ``Store`` over one client.

The key names and the data layout are in brain/store/keys.py (the one module that spells a key); the Lua scripts,
one file each, in brain/store/scripts/. Reach an operation through its repository (``store.facts.add``,
``store.forgetting.forget``); import a record or a constant from the module that defines it
(``from brain.store.facts import FactAdded``) and a client from ``brain.store.client.connect``.
"""

from __future__ import annotations

from typing import Any

from brain.store.canaries import Canaries
from brain.store.chats import Chats
from brain.store.counts import Counts
from brain.store.dashboard import Dashboard
from brain.store.facts import Facts
from brain.store.forgetting import Forgetting
from brain.store.idempotency import Idempotency
from brain.store.ids import MemberIds
from brain.store.messages import MessageMaps
from brain.store.persistence import Persistence
from brain.store.personas import Personas
from brain.store.profiles import Profiles
from brain.store.rate_limits import RateLimits
from brain.store.ratings import Ratings
from brain.store.registry import Registry
from brain.store.tombstones import Tombstones
from brain.store.trainer_lock import TrainerLock
from brain.store.training_log import TrainingLog
from brain.store.turns import Turns


class Store:
    """The store's repositories over one redis.asyncio client (``r``), each built once and shared by those that
    need it."""

    def __init__(self, client: Any, *, rate_window_s: int = 60):
        self.r = client
        self.ids = MemberIds(client)
        self.profiles = Profiles(client)
        self.personas = Personas(client, self.profiles, self.ids)
        self.messages = MessageMaps(client)
        self.turns = Turns(client, self.ids, self.personas, self.messages)
        self.rate_limits = RateLimits(client, window_s=rate_window_s)
        self.chats = Chats(client, self.rate_limits, self.ids, self.turns)
        self.facts = Facts(client, self.turns)
        self.idempotency = Idempotency(client)
        self.tombstones = Tombstones(client, self.ids)
        self.ratings = Ratings(client, self.tombstones, self.personas)
        self.training_log = TrainingLog(client, self.tombstones)
        self.forgetting = Forgetting(client, self.tombstones, self.personas, self.ratings, self.turns)
        self.counts = Counts(client)
        self.dashboard = Dashboard(client)
        self.registry = Registry(client, self.dashboard)
        self.canaries = Canaries(client, self.registry)
        self.trainer_lock = TrainerLock(client)
        self.persistence = Persistence(client)

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def close(self) -> None:
        await self.r.aclose()
