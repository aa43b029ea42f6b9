"""What the store's tests do again and again: a member says something (one stored exchange), a reply is kept."""

from __future__ import annotations

from typing import Any

from brain.feedback_records import TurnRecord
from brain.store import Store
from brain.store.chats import RecordResult

ANN, BOB = "telegram:1", "telegram:2"


def turn(role: str, text: str, tokens: int = 5) -> dict[str, Any]:
    return {"role": role, "text": text, "ts": 1.0, "tokens": tokens}


async def say(store: Store, user: str, text: str, chat: str = "c1", *, kind: str = "direct", max_turns: int = 10,
              max_tokens: int = 1000, ttl_s: int = 3600, keep_earlier: int = 0) -> RecordResult:  # fmt: skip
    """The user says ``text`` in the chat and the bot answers "ok", as the chat route stores it."""
    state = await store.chats.load_state(user, "telegram", chat, kind == "group", earlier=keep_earlier > 0)
    return await store.chats.record_turn(
        user, chat, since=state.since, user_turn=turn("user", text), assistant_turn=turn("assistant", "ok"),
        max_turns=max_turns, max_tokens=max_tokens, ttl_s=ttl_s, display_name="Ann", persona="assistant",
        chat_kind=kind, keep_earlier=keep_earlier,
    )  # fmt: skip


def a_turn(turn_id: str, author: str = ANN, *, reply: str = "a reply", retry_of: str | None = None,
           served_by: str | None = None, chat: str = "c1", at: str = "2026-01-01T00:00:00") -> TurnRecord:  # fmt: skip
    return TurnRecord(
        turn_id=turn_id, author=author, platform="telegram", chat_id=chat, chat_kind="direct",
        prompt=[{"role": "user", "content": "PROMPT-TEXT"}], reply=reply, served_by=served_by, retry_of=retry_of,
        at=at,
    )  # fmt: skip


async def keep(store: Store, turn: TurnRecord, *, turns_kept: int = 10) -> str | None:
    """Keep a reply to the turn's author so that it can be rated (their profile made first)."""
    await say(store, turn.author, "hello")
    since = (await store.profiles.get(turn.author))["since"]
    return await store.turns.save(turn, since=since, ttl_s=600, turns_kept=turns_kept)


async def rate(store: Store, turn: TurnRecord, rater: str, rating: int) -> Any:
    return await store.ratings.rate(turn, rater, rating, ttl_s=600, ratings_kept=10)
