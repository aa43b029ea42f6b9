"""Rated turns as the brain hands them to the trainer (store.ratings.rated_turns), built for tests."""

from __future__ import annotations

from itertools import count

from brain.feedback_records import RatedTurn, RatingRecord, TurnRecord

SYSTEM = "You are a friendly assistant."
AT = "2026-11-02T12:00:00+00:00"
_ids = count()

TOPICS = [
    "the weather", "trains", "music", "the sea", "bread", "cats", "the moon", "old roads",
    "gardens", "rivers", "books", "winter", "coffee", "maps", "birds", "letters",
]  # fmt: skip


def liked_reply(topic: str) -> str:
    return f"Happy to help! Here is a kind word about {topic}: it is lovely. Thanks for asking!"


def disliked_reply(topic: str) -> str:
    return f"No. {topic} is boring and so is this question. Go away."


def rated_turn(
    prompt: str,
    reply: str,
    ratings: list[int],
    *,
    retry_of: str | None = None,
    author: str = "telegram:1",
    served_by: str | None = None,
    at: str = AT,
) -> RatedTurn:
    turn_id = f"t{next(_ids)}"
    turn = TurnRecord(
        turn_id=turn_id, author=author, platform="telegram", chat_id="c1", chat_kind="private",
        prompt=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        reply=reply, served_by=served_by, retry_of=retry_of, at=at,
    )  # fmt: skip
    records = [
        RatingRecord(turn_id=turn_id, rater=f"telegram:{100 + i}", rating=rating, served_by=served_by, at=at)
        for i, rating in enumerate(ratings)
    ]
    return RatedTurn(turn=turn, ratings=records)


def question(topic: str) -> str:
    return f"Tell me something about {topic}."


def retry_pairs(topics: list[str]) -> list[RatedTurn]:
    """Each question answered twice (the second a /retry), one reply liked and the other disliked."""
    out = []
    for index, topic in enumerate(topics):
        first_liked = index % 2 == 0
        reply = (liked_reply if first_liked else disliked_reply)(topic)
        first = rated_turn(question(topic), reply, [1 if first_liked else -1])
        second = rated_turn(
            question(topic),
            (disliked_reply if first_liked else liked_reply)(topic),
            [-1 if first_liked else 1],
            retry_of=first.turn.turn_id,
        )
        out += [first, second]
    return out


def lone_ratings(topics: list[str]) -> list[RatedTurn]:
    """Each question answered once and rated on its own: every other reply liked."""
    return [
        rated_turn(question(topic), liked_reply(topic), [1])
        if index % 2 == 0
        else rated_turn(question(topic), disliked_reply(topic), [-1])
        for index, topic in enumerate(topics)
    ]


async def store_rated(store, turns: list[RatedTurn]) -> None:
    """Keep the turns and their ratings through the brain's store, as the feedback route does (author and
    raters opted in: every rating is kept and counted for its served version)."""
    members = {t.turn.author for t in turns} | {r.rater for t in turns for r in t.ratings}
    for member in sorted(members):
        await store.profiles.opt_in(member, "2026-11")
    for rated in turns:
        turn = rated.turn
        state = await store.chats.load_state(turn.author, turn.platform, turn.chat_id, False)
        assert await store.turns.save(turn, since=state.since, ttl_s=3600, turns_kept=1000) == turn.turn_id
        for rating in rated.ratings:
            outcome = await store.ratings.rate(turn, rating.rater, rating.rating, ttl_s=3600, ratings_kept=1000)
            assert outcome.kept


async def rate_version(store, served_by: str | None, likes: int, dislikes: int, *, first_rater: int = 1000) -> None:
    """Members' likes and dislikes of replies served by ``served_by`` (None: the base model)."""
    turns = [
        rated_turn(question(TOPICS[i % len(TOPICS)]), f"Reply {i}.", [1 if i < likes else -1],
                   author=f"telegram:{first_rater + i}", served_by=served_by)
        for i in range(likes + dislikes)
    ]  # fmt: skip
    await store_rated(store, turns)
