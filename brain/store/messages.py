"""Which turn each platform message shows: a bot maps the messages of a reply (every piece of a split one) to its
turn, so that a reaction to any of them rates that turn. Kept per chat, with no user id and no text."""

from __future__ import annotations

from typing import Any

from brain.feedback_records import TurnRecord
from brain.store import keys, scripts
from brain.store.client import now_ms


class MessageMaps:
    """``oc:msgturn`` (message id -> turn id) and ``oc:msgorder`` of each chat."""

    def __init__(self, client: Any):
        self.r = client
        self._map = scripts.register(client, "map_messages")
        self._unmap = scripts.register(client, "unmap_turns")

    async def turn_of(self, platform: str, chat_id: str, message_id: str) -> str | None:
        """The turn a platform message shows, as a bot mapped it."""
        return await self.r.hget(keys.message_turns(platform, chat_id), message_id)

    async def map(
        self,
        turn: TurnRecord,
        message_ids: list[str],
        *,
        ttl_s: int,
        most_kept: int,
        most_per_turn: int = 16,
        first_only: bool = False,
    ) -> int | None:
        """Point these messages of the turn's chat at the turn, each message once (one that shows another turn stays
        so) and at most ``most_per_turn`` for the turn; how many do. With ``first_only``, None (and nothing mapped)
        when the turn has messages already."""
        map_keys = [keys.message_turns(turn.platform, turn.chat_id), keys.message_order(turn.platform, turn.chat_id)]
        args = [turn.turn_id, now_ms(), ttl_s, most_kept, most_per_turn, "1" if first_only else "0", *message_ids]
        mapped = int(await self._map(keys=map_keys, args=args))
        return None if mapped < 0 else mapped

    async def mapped(self, turns: list[TurnRecord]) -> list[tuple[str, str, str, str]]:
        """The platform messages mapped to these turns: (platform, chat_id, message_id, turn_id)."""
        ids = {t.turn_id for t in turns}
        chats = sorted({(t.platform, t.chat_id) for t in turns})
        pipe = self.r.pipeline(transaction=False)
        for platform, chat_id in chats:
            pipe.hgetall(keys.message_turns(platform, chat_id))
        found = []
        for (platform, chat_id), mapping in zip(chats, await pipe.execute() if chats else [], strict=True):
            found += [(platform, chat_id, m, t) for m, t in sorted(mapping.items()) if t in ids]
        return found

    def queue_unmap(self, pipe: Any, platform: str, chat_id: str, turn_ids: list[str]) -> None:
        """Queue deleting the chat's messages that point at these turns (they were dropped or forgotten)."""
        map_keys = [keys.message_turns(platform, chat_id), keys.message_order(platform, chat_id)]
        scripts.queue(pipe, self._unmap, map_keys, turn_ids)
