"""The brain's HTTP contract for members' ratings: which platform messages show a reply, a rating of it, and a
choice between two replies (POST /v1/turns/{turn_id}/messages, /v1/feedback, /v1/compare). Torch-free, like
brain/api_models.py, whose base it builds on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from brain.api_models import ID_PATTERN, PLATFORM_PATTERN, ChatRef, Contract
from brain.feedback_records import FeedbackKind

# a turn id: hex the brain draws for every reply
TURN_ID_PATTERN = r"^[0-9a-f]{16}$"
# a reply split over several platform messages (Discord's 2000 characters, a stream's pieces) is mapped in one call
MAX_MESSAGES_PER_TURN = 16


class TurnMessages(Contract):
    """Which platform messages show a turn (every piece of a split reply), so a reaction on one finds its turn."""

    platform: str = Field(pattern=PLATFORM_PATTERN, examples=["discord"])
    chat_id: str = Field(pattern=ID_PATTERN)
    message_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(min_length=1, max_length=MAX_MESSAGES_PER_TURN)


class TurnMessagesResult(Contract):
    turn_id: str
    mapped: int = Field(description="how many message ids now point at the turn")


def _exact_rating(value: Any) -> Any:
    # JSON's true and 1.0 are not ratings: only the integers the contract names are
    if type(value) is not int:
        raise ValueError("a rating is the integer -1, 0 or 1")
    return value


RatingValue = Annotated[Literal[-1, 0, 1], BeforeValidator(_exact_rating), Field(json_schema_extra={"type": "integer"})]


class FeedbackRequest(ChatRef):
    """A member (user_id: the RATER) rates one of the bot's replies, named by its turn id or by one of its
    platform messages (exactly one of the two). rating 0: the reaction was removed (the rating is deleted)."""

    # the document says what the validator below checks, so that a request valid by it is never refused
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["turn_id"], "not": {"required": ["message_id"]}},
                {"required": ["message_id"], "not": {"required": ["turn_id"]}},
            ]
        }
    )

    turn_id: str | None = Field(None, pattern=TURN_ID_PATTERN)
    message_id: str | None = Field(None, pattern=ID_PATTERN)
    rating: RatingValue
    kind: FeedbackKind = "reaction"

    @model_validator(mode="after")
    def _exactly_one_target(self) -> FeedbackRequest:
        if (self.turn_id is None) == (self.message_id is None):
            raise ValueError("give exactly one of turn_id or message_id")
        return self


class FeedbackResult(Contract):
    turn_id: str
    rating: Literal[-1, 0, 1]
    stored: bool = Field(description="kept for training: rater and author were both opted in")
    reason: str = Field(description="why it was or was not kept, in words a member can be shown")


class CompareConsent(Contract):
    """A member agrees (or no longer agrees) to be asked now and then which of two replies they prefer."""

    agreed: bool


class CompareConsentState(Contract):
    agreed: bool = Field(description="asked which reply they prefer: opted in, and agreed since their opt-in")
    opted_in: bool
    share: float = Field(description="of an agreeing member's messages, the share answered with two replies")


class ComparisonRequest(ChatRef):
    """The member (user_id) preferred one of two replies to their message: the first and its retry, or the other
    way round. Kept as one preference pair."""

    chosen_turn_id: str = Field(pattern=TURN_ID_PATTERN)
    rejected_turn_id: str = Field(pattern=TURN_ID_PATTERN)

    @model_validator(mode="after")
    def _two_replies(self) -> ComparisonRequest:
        if self.chosen_turn_id == self.rejected_turn_id:
            raise ValueError("the chosen and the rejected reply must be two different turns")
        return self


class ComparisonResult(Contract):
    stored: bool
    reason: str = Field(description="what happened, in words a member can be shown")
