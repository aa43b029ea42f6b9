"""A member's memory of each chat: the window of recent turns, the rolling summary of older ones, the turns kept for
recall once they leave any window, and the one-round-trip read and write of the chat path."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from brain.api_models import EarlierTurn, Fact, Turn
from brain.feedback_records import TurnRecord
from brain.store import keys, scripts
from brain.store.client import now_ms
from brain.store.ids import MemberIds
from brain.store.rate_limits import RateLimits
from brain.store.stored import chat_persona, chat_persona_author, json_object, readable
from brain.store.turns import Turns


@dataclass
class ChatState:
    """Everything one chat message needs from Redis, loaded in one pipelined round trip."""

    profile: dict[str, str]
    turns: list[dict[str, Any]]
    summary: str
    chat_persona: dict[str, Any] | None
    requests_this_window: int
    window_left_s: int
    # who set the group's persona (a kept turn names a custom one by reference, so that its author's forget reaches it)
    chat_persona_author: str | None = None
    # the user's facts and the turns that left the window of any of their chats (empty unless asked for)
    facts: list[dict[str, Any]] = field(default_factory=list)
    earlier: list[dict[str, Any]] = field(default_factory=list)

    @property
    def since(self) -> str:
        return self.profile.get("since", "")

    @property
    def opted_in(self) -> bool:
        return self.profile.get("consent") == "in"

    @property
    def user_persona(self) -> dict[str, Any] | None:
        return json_object(self.profile.get("persona"), "persona")


@dataclass
class RecordResult:
    stored: bool
    logged: bool
    evicted: list[dict[str, Any]] = field(default_factory=list)
    # the profile's creation time: work done later for this turn (an extracted fact) checks it is unchanged
    since: str = ""
    # the reply's turn record, kept to be rated (None: none was given, or the user was forgotten meanwhile)
    turn_id: str | None = None


class Chats:
    """``oc:turns``, ``oc:summary`` (per chat), ``oc:chats`` and ``oc:earlier`` of each member, and the training log
    that a turn of an opted-in member is appended to as it is stored."""

    def __init__(self, client: Any, rate_limits: RateLimits, ids: MemberIds, turns: Turns):
        self.r = client
        self.rate_limits = rate_limits
        self.ids = ids
        self.turns = turns
        self._record_turn = scripts.register(client, "record_turn")
        self._fold_summary = scripts.register(client, "fold_summary")
        self._reset = scripts.register(client, "reset_chat")

    async def load_state(
        self, user: str, platform: str, chat_id: str, group: bool, *, earlier: bool = False
    ) -> ChatState:
        """The user's state for one message, counted against their rate window; with ``earlier``, also the turns
        kept for recall."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.profile(user))
        pipe.lrange(keys.turns(user, chat_id), 0, -1)
        pipe.get(keys.summary(user, chat_id))
        # count and expiry in one script: the window starts with the first request and always ends
        self.rate_limits.queue_take(pipe, user)
        pipe.lrange(keys.facts(user), 0, -1)
        if earlier:
            pipe.lrange(keys.earlier(user), 0, -1)
        if group:  # last and only when needed: a cluster pipeline refuses keyless fillers such as ECHO
            pipe.get(keys.chat_persona(platform, chat_id))
        profile, turns, summary, (count, ttl), facts, *rest = await pipe.execute()
        kept = rest.pop(0) if earlier else []
        return ChatState(
            profile=profile,
            turns=readable(turns, Turn, "memory turn"),
            summary=summary or "",
            chat_persona=chat_persona(rest[0] if rest else None),
            chat_persona_author=chat_persona_author(rest[0] if rest else None),
            requests_this_window=int(count),
            window_left_s=max(int(ttl), 1),
            facts=readable(facts, Fact, "fact"),
            # read by Memory.for_chat, off the event loop, which takes what it can of each: only JSON is checked here
            earlier=[turn for turn in (json_object(raw, "earlier turn") for raw in kept) if turn is not None],
        )

    async def record_turn(
        self,
        user: str,
        chat_id: str,
        *,
        since: str,
        user_turn: dict[str, Any],
        assistant_turn: dict[str, Any],
        max_turns: int,
        max_tokens: int,
        ttl_s: int,
        display_name: str,
        persona: str,
        chat_kind: str = "direct",
        keep_earlier: int = 0,
        turn: TurnRecord | None = None,
        turns_kept: int = 256,
    ) -> RecordResult:
        """Store one exchange; log it for training only if the user is opted in at this moment. Turns that
        leave the window are kept for recall (the last ``keep_earlier`` of them, over every chat). ``turn``, the
        reply's record, is kept so that it can be rated (``turns_kept`` of the user's, for ``ttl_s``)."""
        record_keys = [
            keys.profile(user), keys.turns(user, chat_id), keys.log(user), keys.chats(user),
            keys.summary(user, chat_id), keys.earlier(user), keys.facts(user),
        ]  # fmt: skip
        args: list[Any] = [
            since, chat_id, json.dumps(user_turn), json.dumps(assistant_turn),
            max_turns, max_tokens, ttl_s, now_ms(), display_name, persona, chat_kind, keep_earlier,
        ]  # fmt: skip
        result = await self._record_turn(keys=record_keys, args=args)
        status, logged = int(result[0]), bool(int(result[1]))
        if status < 0:
            return RecordResult(stored=False, logged=False)
        since = str(result[2])
        if turn is not None:
            await self.ids.member(turn.author)  # loads the id key that a kept turn's persona reference is keyed with
        pipe = self.r.pipeline(transaction=False)
        if turn is not None:
            self.turns.queue_save(pipe, turn, since=since, ttl_s=ttl_s, turns_kept=turns_kept)
        pipe.sadd(keys.USERS, user)
        pipe.incr(keys.REQUESTS_SERVED)
        if logged:
            pipe.sadd(keys.LOGGED_USERS, user)
        replies = await pipe.execute()
        turn_id = None
        if turn is not None:
            turn_id = await self.turns.saved(turn, int(replies[1]))
        evicted = [turn for turn in (json_object(raw, "memory turn") for raw in result[3:]) if turn is not None]
        return RecordResult(stored=True, logged=logged, evicted=evicted, since=since, turn_id=turn_id)

    async def fold_summary(self, user: str, chat_id: str, summary: str, ttl_s: int) -> None:
        # only while the chat still exists: a /forget or /reset meanwhile must not bring it back
        summary_keys = [keys.chats(user), keys.summary(user, chat_id)]
        await self._fold_summary(keys=summary_keys, args=[chat_id, summary, ttl_s])

    async def reset(self, user: str, chat_id: str) -> int:
        """Clear one chat's memory: its turns, its summary and its turns kept for recall, and the replies kept to be
        rated or retried that quote any of it. Returns how many turns of the window were cleared."""
        chat_keys = [
            keys.turns(user, chat_id), keys.summary(user, chat_id), keys.chats(user), keys.earlier(user),
            keys.turn_records(user), keys.turn_order(user),
        ]  # fmt: skip
        cleared, *dropped = await self._reset(keys=chat_keys, args=[chat_id])
        await self.turns.unlink(dropped)
        return int(cleared)

    async def memory(self, user: str, chat_id: str) -> tuple[str, list[dict[str, Any]]]:
        """One chat's summary and window of turns."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(keys.summary(user, chat_id))
        pipe.lrange(keys.turns(user, chat_id), 0, -1)
        summary, turns = await pipe.execute()
        return summary or "", readable(turns, Turn, "memory turn")

    async def of(self, user: str) -> set[str]:
        """The ids of the chats the user has memory in."""
        return set(await self.r.smembers(keys.chats(user)))

    async def earlier_turns(self, user: str) -> list[dict[str, Any]]:
        """The turns kept for recall, oldest first, each with its chat_id and chat_kind."""
        return readable(await self.r.lrange(keys.earlier(user), 0, -1), EarlierTurn, "earlier turn")
