"""Members' ratings of the bot's replies: POST /v1/feedback, and POST /v1/turns/{turn_id}/messages, by which a bot
says which of its platform messages show a turn (so that a reaction on any of them finds it).

A rating comes only from a member of the turn's chat. In a direct chat that is the member the turn answered, which
the brain checks itself; in a group it is whoever the platform shows reacting there: the brain cannot list a
group's members, so it relies on the bot, which forwards only the reactions the platform reported in that chat
(with its own platform and chat id, which must be the turn's). Anyone else hears 404 unknown_turn, as for a turn
that does not exist.

A rating is kept for training only while the rater and the member the reply answered are both opted in at that
moment; either way the result says what happened, in words a member can be shown. A rating counts against the
rater's rate limit, like a message.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from brain.api_feedback import (
    MAX_MESSAGES_PER_TURN,
    TURN_ID_PATTERN,
    FeedbackRequest,
    FeedbackResult,
    TurnMessages,
    TurnMessagesResult,
)
from brain.api_models import ChatKind
from brain.feedback_records import TurnRecord
from brain.service.auth import Authorized
from brain.service.deps import RuntimeDep
from brain.service.errors import ApiError, responses
from brain.service.runtime import Runtime
from brain.store.ratings import RatingOutcome

router = APIRouter(dependencies=[Authorized], tags=["feedback"])

TurnIdPath = Annotated[str, Path(pattern=TURN_ID_PATTERN, examples=["0123456789abcdef"])]

UNKNOWN_TURN = (
    "I know no reply of mine by that {what} in this chat: it was never mapped, or it is older than what I keep."
)


async def _turn_in_chat(runtime: Runtime, platform: str, chat_id: str, turn_id: str | None, what: str) -> TurnRecord:
    turn = await runtime.store.turns.get(turn_id) if turn_id else None
    if turn is None or (turn.platform, turn.chat_id) != (platform, chat_id):
        raise ApiError(404, "unknown_turn", UNKNOWN_TURN.format(what=what))
    return turn


@router.post("/v1/turns/{turn_id}/messages", response_model=TurnMessagesResult, responses=responses(404, 429))
async def map_messages(turn_id: TurnIdPath, body: TurnMessages, runtime: RuntimeDep) -> TurnMessagesResult:
    """Note which platform messages of the chat show this turn (every piece of a split reply); 404 unknown_turn
    for a turn that is not kept, or not of that chat.

    Only the turn's own chat and platform (the bot that posted its messages); each message once (a message that
    shows another turn keeps showing it); at most MAX_MESSAGES_PER_TURN messages a turn. A turn's first mapping
    comes with the reply the member's message already paid for; every later call counts against the rate limit
    of the member the turn answered, so that no one can fill a chat's map and push real mappings out."""
    turn = await _turn_in_chat(runtime, body.platform, body.chat_id, turn_id, "turn id")
    ids = list(dict.fromkeys(body.message_ids))
    mapped = await _map(runtime, turn, ids, first_only=True)
    if mapped is None:
        await _count(runtime, turn.author, "mappings")
        mapped = await _map(runtime, turn, ids, first_only=False)
    return TurnMessagesResult(turn_id=turn.turn_id, mapped=mapped or 0)


async def _map(runtime: Runtime, turn: TurnRecord, ids: list[str], *, first_only: bool) -> int | None:
    return await runtime.store.messages.map(
        turn,
        ids,
        ttl_s=runtime.settings.memory.ttl_s,
        most_kept=runtime.settings.feedback.messages_per_chat,
        most_per_turn=MAX_MESSAGES_PER_TURN,
        first_only=first_only,
    )


async def _count(runtime: Runtime, user: str, what: str) -> None:
    """Count one request against the user's rate window; 429 past the limit."""
    requests, window_left_s = await runtime.store.rate_limits.take(user)
    limit = runtime.settings.limits.rate_per_minute
    if requests > limit:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many messages and {what}: at most {limit} a minute. Try again in {window_left_s} s.",
            {"Retry-After": str(window_left_s)},
        )


@router.post("/v1/feedback", response_model=FeedbackResult, responses=responses(404, 429))
async def feedback(body: FeedbackRequest, runtime: RuntimeDep) -> FeedbackResult:
    """Rate one of the bot's replies (by its turn id or one of its platform messages): +1, -1, or 0 to withdraw
    a rating. A new rating replaces the rater's last one of that reply. 404 unknown_turn for a reply not kept."""
    rater = body.key
    await _count(runtime, rater, "ratings")
    if body.message_id is not None:
        turn_id = await runtime.store.messages.turn_of(body.platform, body.chat_id, body.message_id)
        turn = await _turn_in_chat(runtime, body.platform, body.chat_id, turn_id, "message")
    else:
        turn = await _turn_in_chat(runtime, body.platform, body.chat_id, body.turn_id, "turn id")
    if turn.chat_kind != ChatKind.group.value and rater != turn.author:
        # a direct chat has one member, the one the turn answered: anyone else rating it is not in the chat, and
        # hears what an unknown turn gets, so that turn ids and message ids cannot be probed
        raise ApiError(404, "unknown_turn", UNKNOWN_TURN.format(what="turn id" if body.turn_id else "message"))
    outcome = await runtime.store.ratings.rate(
        turn,
        rater,
        body.rating,
        ttl_s=runtime.settings.memory.ttl_s,
        ratings_kept=runtime.settings.feedback.ratings_kept,
    )
    return FeedbackResult(
        turn_id=turn.turn_id, rating=body.rating, stored=outcome.kept, reason=_reason(body.rating, outcome)
    )


def _reason(rating: int, outcome: RatingOutcome) -> str:
    if outcome.kept:
        return "Thanks: your rating is kept, and tonight's training learns from it."
    if rating == 0:
        return "Your rating was withdrawn." if outcome.previous else "There was no kept rating of yours to withdraw."
    if not outcome.rater_opted_in:
        return "Thanks, but it is not kept for training: you have not opted in (see /optin)."
    return "Thanks, but it is not kept for training: the member I was answering has not opted in."
