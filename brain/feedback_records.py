"""The records of members' reactions, typed: what the brain stores when a reply is rated, and what ``trainer
nightly`` reads back to learn from and to judge a candidate by.

brain/store.py stores them under the keys it names; the brain's feedback route writes them; the trainer's
export reads them. Like the registry's records they carry ``format`` (see brain/registry_records.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from brain.registry_records import RegistryRecord

# +1 liked, -1 disliked; 0 on the wire means "my reaction was removed" and is never stored
Rating = Literal[-1, 1]


class TurnRecord(RegistryRecord):
    """One reply of the bot, kept (with the memory TTL, under its author's keys) so that it can be rated.

    ``prompt`` is the conversation the model saw, system message first, as chat messages; ``reply`` what it
    answered. ``retry_of`` links a /retry's reply to the first reply to the same message, so that two replies
    to one prompt can become a preference pair. ``served_by`` is the adapter that wrote it (``community@3``;
    None: the base model), for the like-rate of each version.
    """

    turn_id: str
    author: str  # platform:user_id of the member the bot answered
    platform: str
    chat_id: str
    chat_kind: str
    prompt: list[dict[str, str]]
    reply: str
    served_by: str | None = None
    retry_of: str | None = None
    at: str  # ISO time of the reply
    # what of the member's memory the prompt quotes: the ids of the facts in its note, and the chats whose earlier
    # messages it recalled; deleting one of those facts, or resetting one of those chats, drops the turn, so that
    # a kept turn (and a /retry of it, and tonight's training) never outlives what it quotes
    facts: list[str] = Field(default_factory=list)
    recalled_from: list[str] = Field(default_factory=list)


class RatingRecord(RegistryRecord):
    """One member's rating of one turn (their latest: a changed reaction replaces it, a removed one deletes it)."""

    turn_id: str
    rater: str  # platform:user_id
    rating: Rating
    served_by: str | None = None  # copied from the turn, for like-rates without reading the turn
    at: str


class RatedTurn(RegistryRecord):
    """What the trainer's export reads: a turn with the ratings given to it while rater and author were both
    opted in. Turns of one prompt share ``group`` (the first reply's turn id), so /retry pairs can be formed."""

    turn: TurnRecord
    ratings: list[RatingRecord] = Field(default_factory=list)

    @property
    def group(self) -> str:
        return self.turn.retry_of or self.turn.turn_id

    @property
    def score(self) -> int:
        """The sum of the ratings: > 0 liked on balance, < 0 disliked."""
        return sum(r.rating for r in self.ratings)


class Canary(RegistryRecord):
    """A candidate that passed the gate and now serves a share of opted-in members (``oc:registry:canary``
    field TARGET) until it has enough ratings to be promoted for everyone or rolled back."""

    target: str
    version: int = Field(ge=1)
    name: str  # served name, e.g. community@4
    path: str  # the version's directory, relative to the registry root
    share: float = Field(gt=0, le=1)  # of opted-in members, chosen by a hash of the member's id (sticky)
    min_ratings: int = Field(ge=1)
    started_at: str
    run: str | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)


FeedbackKind = Literal["reaction", "button", "command"]
__all__ = ["Canary", "FeedbackKind", "RatedTurn", "Rating", "RatingRecord", "TurnRecord"]
