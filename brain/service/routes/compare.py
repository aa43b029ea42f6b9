""" "Which reply do you prefer?": an operator may have some messages of members who agreed answered twice
(feedback.compare_share); the member picks one, and the two replies become one preference pair.

The brain marks such a reply (ChatReply.compare); the bot asks for the second reply as a /retry of the first
(POST /v1/chat with retry_of), shows both, and sends the member's choice here. The choice is kept as two
ratings by the member, +1 for the chosen reply and -1 for the other: a /retry's pair, which the nightly run
learns from with DPO. Only a member who is opted in and agreed to comparisons (POST
/v1/users/{platform}/{user_id}/compare) is ever asked, and only their choice between their own two replies
counts.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter

from brain.api_feedback import CompareConsent, CompareConsentState, ComparisonRequest, ComparisonResult
from brain.consent import is_opted_in
from brain.feedback_records import TurnRecord
from brain.service.auth import Authorized
from brain.service.deps import PlatformPath, RuntimeDep, UserIdPath
from brain.service.errors import ApiError, responses
from brain.service.routes.feedback import UNKNOWN_TURN
from brain.service.runtime import Runtime
from brain.store.profiles import agreed_to_compare

router = APIRouter(dependencies=[Authorized], tags=["feedback"])

NOT_OPTED_IN = "Comparisons are only for members who opted in to training (see /optin)."
NOT_AGREED = "You have not agreed to be asked which reply you prefer; nothing was kept."
NOT_A_PAIR = "Those two replies do not answer the same message of yours."


def asks_to_compare(turn_id: str, share: float) -> bool:
    """Whether this reply is one of the share answered twice: a hash of its id, so no state is needed."""
    point = int(hashlib.sha256(f"compare\0{turn_id}".encode()).hexdigest()[:8], 16) / 16**8
    return point < share


async def should_compare(runtime: Runtime, user: str, turn_id: str | None, *, retry: bool) -> bool:
    """Ask the member which reply they prefer: comparisons on, a first reply that was kept, a member who agreed."""
    share = runtime.settings.feedback.compare_share
    if share <= 0 or retry or turn_id is None or not asks_to_compare(turn_id, share):
        return False
    return agreed_to_compare(await runtime.store.profiles.get(user))


@router.post("/v1/users/{platform}/{user_id}/compare", response_model=CompareConsentState, responses=responses(409))
async def agree(
    platform: PlatformPath, user_id: UserIdPath, body: CompareConsent, runtime: RuntimeDep
) -> CompareConsentState:
    """Agree (or no longer agree) to be asked which of two replies you prefer. 409 not_opted_in for agreeing
    without being opted in (nothing changes)."""
    user = f"{platform}:{user_id}"
    if not await runtime.store.profiles.agree_to_compare(user, body.agreed) and body.agreed:
        raise ApiError(409, "not_opted_in", NOT_OPTED_IN)
    profile = await runtime.store.profiles.get(user)
    return CompareConsentState(
        agreed=agreed_to_compare(profile),
        opted_in=is_opted_in(profile),
        share=runtime.settings.feedback.compare_share,
    )


@router.post("/v1/compare", response_model=ComparisonResult, responses=responses(403, 404, 409))
async def compare(body: ComparisonRequest, runtime: RuntimeDep) -> ComparisonResult:
    """Keep the member's choice between two of their replies to one message (a reply and its retry) as one
    preference pair. 404 unknown_turn for a reply not theirs or not kept in this chat, 403 not_agreed for a
    member who did not agree to comparisons, 409 not_a_pair for two replies to different messages; nothing
    changes then."""
    user = body.key
    chosen = await _own_turn(runtime, body, body.chosen_turn_id)
    rejected = await _own_turn(runtime, body, body.rejected_turn_id)
    if not agreed_to_compare(await runtime.store.profiles.get(user)):
        raise ApiError(403, "not_agreed", NOT_AGREED)
    if (chosen.retry_of or chosen.turn_id) != (rejected.retry_of or rejected.turn_id):
        raise ApiError(409, "not_a_pair", NOT_A_PAIR)
    settings = runtime.settings
    kept = []
    for turn, rating in ((chosen, 1), (rejected, -1)):
        outcome = await runtime.store.ratings.rate(
            turn, user, rating, ttl_s=settings.memory.ttl_s, ratings_kept=settings.feedback.ratings_kept, choice=True
        )
        kept.append(outcome.kept)
    if all(kept):
        return ComparisonResult(
            stored=True, reason="Thanks: your choice is kept, and tonight's training learns from it."
        )
    return ComparisonResult(stored=False, reason="Thanks, but your choice is not kept: you are no longer opted in.")


async def _own_turn(runtime: Runtime, body: ComparisonRequest, turn_id: str) -> TurnRecord:
    turn = await runtime.store.turns.get(turn_id)
    if turn is None or (turn.platform, turn.chat_id, turn.author) != (body.platform, body.chat_id, body.key):
        raise ApiError(404, "unknown_turn", UNKNOWN_TURN.format(what="turn id"))
    return turn
