"""Ratings and /retry, written once for every platform.

A member rates one of the bot's replies with a reaction (or a button, or the console's /good and /bad): which
reactions mean what, and what a changed set of reactions means, is decided here. The bot keeps no state: after
a reply is shown it tells the brain which platform messages show it (`link_messages`), and a rating names the
message it was given on; the brain holds the map.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass

from bot.client import BrainClient, BrainError
from bot.commands import Speaker
from bot.settings import ReactionSettings
from brain.api_feedback import MAX_MESSAGES_PER_TURN, FeedbackRequest, FeedbackResult, TurnMessages
from brain.api_models import ChatRequest
from brain.feedback_records import FeedbackKind

log = logging.getLogger(__name__)

LIKE, DISLIKE, REMOVED = 1, -1, 0
RETRY_LAST = "last"
# what the brain answers for a message that shows none of its turns (not the bot's, or forgotten since)
UNKNOWN_TURN = "unknown_turn"
NOT_RATEABLE = "I can't rate that message any more: it is not one of my replies, or it is too old."
NOTHING_TO_RETRY = "There is nothing of yours here that I could answer again."


@dataclass(frozen=True)
class ReactionRules:
    """Which reactions like a reply and which dislike it (settings: bot.<platform>.reactions)."""

    likes: frozenset[str]
    dislikes: frozenset[str]

    @classmethod
    def from_settings(cls, settings: ReactionSettings) -> ReactionRules:
        return cls(frozenset(map(_plain, settings.likes)), frozenset(map(_plain, settings.dislikes)))

    def rating_of(self, reaction: str) -> int | None:
        """LIKE or DISLIKE for a reaction that rates; None for any other reaction."""
        reaction = _plain(reaction)
        if reaction in self.likes:
            return LIKE
        if reaction in self.dislikes:
            return DISLIKE
        return None

    def rates(self, reaction: str) -> bool:
        return self.rating_of(reaction) is not None

    def held(self, reactions: Iterable[str]) -> int | None:
        """The rating a member's set of reactions on one reply gives: LIKE or DISLIKE, REMOVED when none of them
        rates, None when they both like and dislike it (ambiguous)."""
        ratings = {r for r in map(self.rating_of, reactions) if r is not None}
        if len(ratings) > 1:
            return None
        return ratings.pop() if ratings else REMOVED

    def change(self, before: Iterable[str], after: Iterable[str]) -> int | None:
        """The rating to send when a member's reactions on a reply went from `before` to `after`, or None when
        their rating did not change. Where `after` both likes and dislikes, the reactions just added decide."""
        old_set, new_set = set(before), set(after)
        old, new = self.held(old_set), self.held(new_set)
        if new is None:
            new = self.held(new_set - old_set)
            if new is None or new == REMOVED:
                return None
        return None if new == old else new


def _plain(reaction: str) -> str:
    # platforms send "❤" and "❤️" (with the emoji presentation selector) for the same reaction
    return reaction.replace("\ufe0f", "")


# how long a member's ratings of one reply must rest before the newest is sent (a flood of toggles costs one call)
SETTLE_S = 1.0
# a wait the brain asks for without saying how long (429 without Retry-After)
DEFAULT_WAIT_S = 5.0


class SettledRatings:
    """A member's ratings of one reply coalesce: each new one replaces the one not yet sent, and the newest is sent
    once none came for `settle_s`; a 429 from the brain is waited out (its Retry-After) and the newest one sent
    then. Ratings of other members or other replies go on meanwhile.

    A rating is given as the call that sends it (`send`), so that a platform may work out what the member holds only
    when it is sent, not for every toggle.
    """

    def __init__(self, settle_s: float = SETTLE_S):
        self.settle_s = settle_s
        self._newest: dict[Hashable, Callable[[], Awaitable[object]]] = {}
        self._fresh: dict[Hashable, asyncio.Event] = {}
        self._senders: dict[Hashable, asyncio.Task[None]] = {}

    def give(self, key: Hashable, send: Callable[[], Awaitable[object]]) -> None:
        """`send` is the member's newest rating of the reply `key` names (e.g. (message, member))."""
        self._newest[key] = send
        self._fresh.setdefault(key, asyncio.Event()).set()
        if key not in self._senders:
            self._senders[key] = asyncio.create_task(self._send_when_settled(key), name="settled-rating")

    async def settled(self) -> None:
        """Return once every rating given has been sent (or given up on)."""
        while self._senders:
            await asyncio.gather(*self._senders.values(), return_exceptions=True)

    async def aclose(self) -> None:
        for task in self._senders.values():
            task.cancel()
        await asyncio.gather(*self._senders.values(), return_exceptions=True)

    async def _send_when_settled(self, key: Hashable) -> None:
        fresh = self._fresh[key]
        try:
            while key in self._newest:
                while fresh.is_set():  # rest until no newer rating came for settle_s
                    fresh.clear()
                    await asyncio.sleep(self.settle_s)
                send = self._newest.pop(key)
                try:
                    await send()
                except BrainError as exc:
                    if exc.status != 429:
                        log.warning("could not pass on a rating: %s %s", exc.code, exc.message)
                        continue
                    # the brain asked to wait: then the newest rating goes, this one if none came since
                    self._newest.setdefault(key, send)
                    await asyncio.sleep(exc.retry_after or DEFAULT_WAIT_S)
                except Exception:
                    log.exception("could not pass on a rating")
        finally:
            del self._senders[key], self._fresh[key]


def retry_request(who: Speaker, *, of_message: str | None, request_id: str | None) -> ChatRequest:
    """Ask the brain to answer a message of `who` again: a second reply, the first one kept. The message is the one
    the bot's message `of_message` answered, or else their last one in the chat."""
    return ChatRequest(
        **who.chat.model_dump(),
        display_name=who.display_name,
        retry_of=None if of_message else RETRY_LAST,
        retry_message=of_message,
        request_id=request_id,
    )


async def rate(
    client: BrainClient,
    rater: Speaker,
    rating: int,
    *,
    kind: FeedbackKind,
    message_id: str | None = None,
    turn_id: str | None = None,
) -> FeedbackResult | None:
    """Give (or, with REMOVED, take back) `rater`'s rating of the reply shown by `message_id` (or of `turn_id`).

    None when that message shows no reply the brain knows: a reaction on anyone else's message means nothing.
    Any other refusal of the brain is raised (BrainError).
    """
    request = FeedbackRequest(
        **rater.chat.model_dump(), message_id=message_id, turn_id=turn_id, rating=rating, kind=kind
    )
    try:
        return await client.feedback(request)
    except BrainError as exc:
        if exc.status == 404 and exc.code == UNKNOWN_TURN:
            return None
        raise


async def link_messages(client: BrainClient, request: ChatRequest, turn_id: str, message_ids: list[str]) -> None:
    """Tell the brain which platform messages show its reply `turn_id` (every piece of a split reply), so that a
    reaction on any of them rates it. A failure costs only the rating of this reply: it is logged, not raised."""
    for start in range(0, len(message_ids), MAX_MESSAGES_PER_TURN):
        chunk = message_ids[start : start + MAX_MESSAGES_PER_TURN]
        try:
            await client.link_turn_messages(
                turn_id, TurnMessages(platform=request.platform, chat_id=request.chat_id, message_ids=chunk)
            )
        except BrainError as exc:
            log.warning("could not map the messages of turn %s: %s %s", turn_id, exc.code, exc.message)
            return


def thanks(result: FeedbackResult) -> str:
    """What a member who rated with a button or a command is told: their rating, and whether it is kept."""
    said = {LIKE: "You liked this reply.", DISLIKE: "You disliked this reply."}.get(result.rating, "")
    return " ".join(part for part in (said, result.reason) if part) or "Done."
