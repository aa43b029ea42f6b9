"""Turns: the bot's replies, kept so that members can rate them and /retry them (brain/feedback_records.py
TurnRecord). A user's turns live in their slot; ``oc:turnof`` (global) says whose a turn is, so a rating finds it."""

from __future__ import annotations

from typing import Any

from brain.feedback_records import TurnRecord
from brain.store import keys, scripts
from brain.store.client import now_ms
from brain.store.ids import MemberIds, tombstone_member
from brain.store.messages import MessageMaps
from brain.store.personas import Personas
from brain.store.stored import turn_record


def stored_turn(turn: TurnRecord) -> str:
    """A turn as it is kept: a referenced persona's text left out, and its author named by their keyed hash (the
    id key is loaded by then: Turns.queue_save's callers see to it)."""
    record = turn.stored()
    ref = record.persona_ref
    if ref is not None:
        record = record.model_copy(
            update={"persona_ref": ref.model_copy(update={"author": tombstone_member(ref.author)})}
        )
    return record.dumps()


class Turns:
    """``oc:turnrec`` and ``oc:turnorder`` of each user, and the global ``oc:turnof`` of each turn."""

    def __init__(self, client: Any, ids: MemberIds, personas: Personas, messages: MessageMaps):
        self.r = client
        self.ids = ids
        self.personas = personas
        self.messages = messages
        self._save = scripts.register(client, "save_turn")
        self._last = scripts.register(client, "last_turn")

    async def save(self, turn: TurnRecord, *, since: str, ttl_s: int, turns_kept: int) -> str | None:
        """Keep a reply that changed no memory (a /retry's) so that it can be rated: its id, or None when the
        profile created at ``since`` is gone (a /forget meanwhile)."""
        await self.ids.member(turn.author)  # loads the id key that a kept turn's persona reference is keyed with
        pipe = self.r.pipeline(transaction=False)
        self.queue_save(pipe, turn, since=since, ttl_s=ttl_s, turns_kept=turns_kept)
        pipe.incr(keys.REQUESTS_SERVED)
        _, status, _ = await pipe.execute()
        return await self.saved(turn, int(status))

    def queue_save(self, pipe: Any, turn: TurnRecord, *, since: str, ttl_s: int, turns_kept: int) -> None:
        """Queue what keeps a turn: its author key (global, so first: a forget that follows finds it through the
        record), then the record, in one script that checks the author was not forgotten meanwhile. The id key
        must be loaded (``ids.member``) before."""
        pipe.set(keys.turn_author(turn.turn_id), turn.author, ex=ttl_s)
        author = turn.author
        save_keys = [keys.profile(author), keys.turn_records(author), keys.turn_order(author), keys.facts(author)]
        args = [since, turn.turn_id, stored_turn(turn), now_ms(), ttl_s, turns_kept, *turn.facts]
        scripts.queue(pipe, self._save, save_keys, args)

    async def saved(self, turn: TurnRecord, status: int) -> str | None:
        """The turn's id once the save script said ``status``; None, its author key deleted, when it may not stay."""
        if status < 0:  # the author was forgotten, or a fact it quotes deleted, meanwhile: it may not stay
            await self.r.delete(keys.turn_author(turn.turn_id))
            return None
        return turn.turn_id

    async def get(self, turn_id: str) -> TurnRecord | None:
        """A kept turn (None: unknown, expired, dropped for newer ones, or its author was forgotten)."""
        author = await self.r.get(keys.turn_author(turn_id))
        if not author:
            return None
        return await self.personas.resolve(turn_record(await self.r.hget(keys.turn_records(author), turn_id)))

    async def last(self, user: str, platform: str, chat_id: str) -> TurnRecord | None:
        """The user's newest kept turn in that chat."""
        turn_keys = [keys.turn_records(user), keys.turn_order(user)]
        return await self.personas.resolve(turn_record(await self._last(keys=turn_keys, args=[platform, chat_id])))

    async def of(self, user: str) -> list[TurnRecord]:
        """The user's kept turns, oldest first."""
        records = [turn_record(raw) for raw in await self.r.hvals(keys.turn_records(user))]
        # a turn whose persona is gone is shown as kept: without that persona's text
        turns = [(await self.personas.resolve(t)) or t for t in records if t is not None]
        return sorted(turns, key=lambda t: t.at)

    async def unlink(self, dropped: list[str]) -> int:
        """Delete what other slots hold of turns a script dropped or deleted ("platform TAB chat_id TAB turn id"
        each): their author keys and the platform messages that point at them. How many keys went."""
        turns = [line.split("\t") for line in dropped]
        if not turns:
            return 0
        by_chat: dict[tuple[str, str], list[str]] = {}
        for platform, chat_id, turn_id in (t for t in turns if len(t) == 3):
            by_chat.setdefault((platform, chat_id), []).append(turn_id)
        authors = sorted({t[2] for t in turns if len(t) == 3})
        pipe = self.r.pipeline(transaction=False)
        for turn_id in authors:
            pipe.delete(keys.turn_author(turn_id))
        for (platform, chat_id), ids in sorted(by_chat.items()):
            self.messages.queue_unmap(pipe, platform, chat_id, ids)
        replies = await pipe.execute()
        return sum(int(n) for n in replies[: len(authors)])  # keys deleted; the map's entries are not keys
