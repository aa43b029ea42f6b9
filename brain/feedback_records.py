"""The records of members' reactions, typed: what the brain stores when a reply is rated, and what ``trainer
nightly`` reads back to learn from and to judge a candidate by.

brain/store/ stores them under the keys it names; the brain's feedback route writes them; the trainer's
export reads them. Like the registry's records they carry ``format`` (see brain/registry_records.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from brain.registry_records import RegistryRecord

# +1 liked, -1 disliked; 0 on the wire means "my reaction was removed" and is never stored
Rating = Literal[-1, 1]


class PersonaRef(RegistryRecord):
    """The group persona a kept turn's system message began with, named rather than copied: its author and the
    digest of its system prompt (brain/store/personas.py persona_digest). The store resolves it when the turn is
    read, and a turn whose persona is gone (its author was forgotten) is as good as expired. ``text`` is the resolved
    system prompt while a record is in memory; it is never written."""

    author: str
    digest: str
    text: str | None = Field(None, exclude=True)


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
    # a group persona another member wrote: kept as a reference, its text left out of prompt[0] (see PersonaRef)
    persona_ref: PersonaRef | None = None
    # what of the member's memory the prompt quotes: the ids of the facts in its note, and the chats whose earlier
    # messages it recalled; deleting one of those facts, or resetting one of those chats, drops the turn, so that
    # a kept turn (and a /retry of it, and tonight's training) never outlives what it quotes
    facts: list[str] = Field(default_factory=list)
    recalled_from: list[str] = Field(default_factory=list)

    def stored(self) -> TurnRecord:
        """The record as it is written: without the text of a referenced persona."""
        ref = self.persona_ref
        if ref is None or ref.text is None or not self.prompt:
            return self
        system = self.prompt[0]["content"]
        text = ref.text.strip()
        rest = system[len(text) :].lstrip("\n") if system.startswith(text) else system
        return self.model_copy(
            update={"prompt": [{**self.prompt[0], "content": rest}, *self.prompt[1:]],
                    "persona_ref": ref.model_copy(update={"text": None})}
        )  # fmt: skip

    def resolved(self, text: str, author: str) -> TurnRecord:
        """The stored record with its persona's system prompt ``text`` put back in front of the system message, and
        the persona's ``author`` named by their id (stored, the reference names them by a keyed hash)."""
        assert self.persona_ref is not None
        text = text.strip()
        rest = self.prompt[0]["content"] if self.prompt else ""
        system = {"role": "system", "content": f"{text}\n\n{rest}" if rest else text}
        ref = self.persona_ref.model_copy(update={"text": text, "author": author})
        return self.model_copy(update={"prompt": [system, *self.prompt[1:]], "persona_ref": ref})


class RatingRecord(RegistryRecord):
    """One member's rating of one turn (their latest: a changed reaction replaces it, a removed one deletes it)."""

    turn_id: str
    rater: str  # platform:user_id
    rating: Rating
    served_by: str | None = None  # copied from the turn, for like-rates without reading the turn
    at: str
    # given as a choice between two replies ("which reply do you prefer?": +1 the chosen, -1 the other): a
    # preference, not a like, so like-rates do not count it and the chosen reply is not imitated as a liked one
    choice: bool = False


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
        """The sum of the ratings: > 0 liked on balance (or chosen in a comparison), < 0 disliked."""
        return sum(r.rating for r in self.ratings)

    @property
    def liked(self) -> bool:
        """Liked on balance by members' reactions, comparisons aside: a reply worth imitating."""
        return sum(r.rating for r in self.ratings if not r.choice) > 0


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
    # the gate could not tell it from live on held-out ratings: promoted only if members like it at least as well
    members_decide: bool = False


FeedbackKind = Literal["reaction", "button", "command"]
__all__ = ["Canary", "FeedbackKind", "PersonaRef", "RatedTurn", "Rating", "RatingRecord", "TurnRecord"]
