"""Members' ratings of the bot's replies (👍/👎, /retry), kept only while the rater and the reply's author are both
opted in; what the nightly run learns from, and the like counts of each served version, counted from them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from brain.feedback_records import RatedTurn, RatingRecord, TurnRecord
from brain.store import keys, scripts
from brain.store.client import chunks, now_ms
from brain.store.personas import Personas
from brain.store.stored import rating_record, turn_record
from brain.store.tombstones import Tombstones

# the served_by of the base model in the like counts
BASE = "base"


@dataclass
class RatingOutcome:
    """What a rating did: ``kept`` for training, or not and why (who was not opted in)."""

    kept: bool
    previous: int  # the rater's kept rating of the turn before (0: none)
    rater_opted_in: bool
    author_opted_in: bool


class Ratings:
    """``oc:ratings`` and ``oc:ratingorder`` of each rater, listed in ``oc:raters``."""

    def __init__(self, client: Any, tombstones: Tombstones, personas: Personas):
        self.r = client
        self.tombstones = tombstones
        self.personas = personas
        self._rate = scripts.register(client, "rate_turn")
        self._unrate = scripts.register(client, "unrate_turns")

    async def rate(
        self, turn: TurnRecord, rater: str, rating: int, *, ttl_s: int, ratings_kept: int, choice: bool = False
    ) -> RatingOutcome:
        """The rater's rating of the turn (0: withdrawn) replaces their previous one. It is kept for training only
        while rater and author are both opted in; like_counts counts it from there, unless it is a ``choice``
        between two replies (a preference, not a like)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(keys.profile(turn.author), "consent")
        pipe.hget(keys.profile(rater), "consent")
        author_consent, rater_consent = await pipe.execute()
        author_in = author_consent == "in"
        if rating != 0 and author_in and rater_consent == "in":
            # listed before it is kept: a /forget of the rater that follows takes them off the list again
            await self.r.sadd(keys.RATERS, rater)
        record = ""
        if rating != 0:
            at = datetime.now(timezone.utc).isoformat()
            record = RatingRecord(
                turn_id=turn.turn_id, rater=rater, rating=rating, served_by=turn.served_by, at=at, choice=choice
            ).dumps()
        rating_keys = [keys.profile(rater), keys.ratings(rater), keys.rating_order(rater)]
        args: list[Any] = [turn.turn_id, rating, "1" if author_in else "0", record, now_ms(), ttl_s, ratings_kept]
        previous, kept, rater_in = (int(n) for n in await self._rate(keys=rating_keys, args=args))
        return RatingOutcome(
            kept=bool(kept), previous=previous, rater_opted_in=bool(rater_in), author_opted_in=author_in
        )

    async def of(self, user: str) -> list[RatingRecord]:
        """The ratings the user gave that are kept, oldest first."""
        records = [rating_record(raw) for raw in await self.r.hvals(keys.ratings(user))]
        return sorted((r for r in records if r is not None), key=lambda r: r.at)

    async def _every_kept(self) -> AsyncIterator[RatingRecord]:
        """Every rater's kept ratings, a pipeline per chunk of raters."""
        for raters in chunks(sorted(await self.r.smembers(keys.RATERS))):
            pipe = self.r.pipeline(transaction=False)
            for rater in raters:
                pipe.hvals(keys.ratings(rater))
            for values in await pipe.execute():
                for record in filter(None, map(rating_record, values)):
                    yield record

    async def like_counts(self) -> dict[str, tuple[int, int]]:
        """Kept ratings per served version (``base``: the base model): {served_by: (likes, dislikes)}.

        Counted from the kept ratings themselves, so they always equal them, whatever deleted a rating (a withdrawn
        or changed one, /optout delete, /forget, the memory TTL): stored counters drifted from the ratings they
        counted, and one member could inflate a version's like-rate by rating and deleting again and again.
        Choices between two replies are not counted: the chosen one was preferred, not liked."""
        counts: dict[str, list[int]] = {}
        async for record in self._every_kept():
            if record.choice:
                continue
            pair = counts.setdefault(record.served_by or BASE, [0, 0])
            pair[0 if record.rating > 0 else 1] += 1
        return {name: (likes, dislikes) for name, (likes, dislikes) in sorted(counts.items())}

    async def rated_turns(self) -> AsyncIterator[RatedTurn]:
        """What the nightly run learns from: every kept turn that was rated, with its kept ratings, and the other
        replies to the same message (a /retry's pair), rated or not. Only turns of authors opted in now and not
        forgotten. By author, oldest turn first."""
        by_turn: dict[str, list[RatingRecord]] = {}
        async for record in self._every_kept():
            by_turn.setdefault(record.turn_id, []).append(record)
        by_author: dict[str, set[str]] = {}
        for turn_ids in chunks(sorted(by_turn)):
            pipe = self.r.pipeline(transaction=False)
            for turn_id in turn_ids:
                pipe.get(keys.turn_author(turn_id))
            for turn_id, author in zip(turn_ids, await pipe.execute(), strict=True):
                if author:
                    by_author.setdefault(author, set()).add(turn_id)
        for author, rated in sorted(by_author.items()):
            pipe = self.r.pipeline(transaction=False)
            pipe.hget(keys.profile(author), "consent")
            pipe.zmscore(keys.TOMBSTONES, await self.tombstones.forms(author))
            pipe.hvals(keys.turn_records(author))
            consent, forgotten, raws = await pipe.execute()
            if consent != "in" or any(score is not None for score in forgotten):
                continue
            kept = [await self.personas.resolve(t) for t in filter(None, map(turn_record, raws))]
            turns = sorted(filter(None, kept), key=lambda t: t.at)
            groups = {t.retry_of or t.turn_id for t in turns if t.turn_id in rated}
            for turn in turns:
                if (turn.retry_of or turn.turn_id) in groups:
                    ratings = sorted(by_turn.get(turn.turn_id, []), key=lambda r: r.at)
                    yield RatedTurn(turn=turn, ratings=ratings)

    async def unrate(self, turn_ids: list[str]) -> None:
        """Delete every member's ratings of these turns (a forgotten user's replies); like_counts, counted from the
        kept ratings, drops them with it."""
        if not turn_ids:
            return
        for raters in chunks(sorted(await self.r.smembers(keys.RATERS))):
            pipe = self.r.pipeline(transaction=False)
            for rater in raters:
                scripts.queue(pipe, self._unrate, [keys.ratings(rater), keys.rating_order(rater)], turn_ids)
            await pipe.execute()
