"""A member's words reach every place they travel, and her /forget reaches every place: group personas she wrote
(inside other members' kept turns and cached prompts too), thread context, facts, her kept replies and the ratings
others gave them, her message mappings, and what the nightly run would learn from. Canaries in each place, then a
scan of all of Redis, the engine's prefix cache and the rated turns the training export reads.

Her /export is checked the same way: every canary of hers that Redis holds is in it."""

from __future__ import annotations

import pytest

from bot.client import BrainClient
from brain.adapters import user_target
from brain.api_feedback import FeedbackRequest, TurnMessages
from brain.api_models import ChatKind, ChatRequest, ContextMessage, FactPin, PersonaSet, UserRef
from brain.store import Store
from brain.store.client import connect
from tests.support.redis_dump import all_text

ANN, BOB, CID = (UserRef(platform="telegram", user_id=str(n)) for n in (701, 702, 703))
PERSONA = "You are QXPERSONA, a lighthouse keeper."
CANARIES = {
    "persona": "QXPERSONA",
    "direct message": "QXDIRECT",
    "group message": "QXGROUP",
    "fact": "QXFACT",
    "thread context": "QXTHREAD",
}


def said(who: UserRef, text: str, chat: str = "g1", kind: ChatKind = ChatKind.group, **kw) -> ChatRequest:
    return ChatRequest(platform=who.platform, user_id=who.user_id, chat_id=chat, chat_kind=kind, text=text, **kw)


def rate(rater: UserRef, turn_id: str, value: int) -> FeedbackRequest:
    return FeedbackRequest(
        platform=rater.platform, user_id=rater.user_id, chat_id="g1", chat_kind=ChatKind.group, rating=value,
        kind="reaction", turn_id=turn_id,
    )  # fmt: skip


@pytest.fixture
async def store(brain):
    s = Store(connect(brain.redis.url))
    yield s
    await s.close()


def cached_text(brain) -> str:
    """What the engine's prefix cache holds, as text."""
    engine = brain.runtime.backend.engine
    tokenizer = brain.runtime.tokenizer
    return " ".join(tokenizer.decode(list(e.ids)) for e in engine.prefixes._entries.values())


async def training_text(store: Store) -> str:
    """What the nightly export reads of rated turns."""
    return " ".join([rated.dumps() async for rated in store.ratings.rated_turns()])


async def test_forget_reaches_every_place_her_words_travelled_and_export_lists_them_first(brain, store) -> None:
    async with BrainClient(brain.url, brain.api_key, retries=0) as client:
        for member in (ANN, BOB, CID):
            await client.opt_in(member)
        await client.set_persona(
            PersonaSet(platform="telegram", user_id=ANN.user_id, chat_id="g1", chat_kind=ChatKind.group, custom=PERSONA)
        )
        await client.remember(FactPin(platform="telegram", user_id=ANN.user_id, chat_id="d1", text="I am QXFACT."))
        direct = await client.chat(said(ANN, "hello from QXDIRECT", chat="d1", kind=ChatKind.direct))
        hers = await client.chat(said(ANN, "a group hello from QXGROUP"))
        await client.link_turn_messages(
            hers.turn_id or "", TurnMessages(platform="telegram", chat_id="g1", message_ids=["9001"])
        )
        # Bob and Cid talk under her persona; Cid's message comes with her words as thread context
        bob = await client.chat(said(BOB, "what do you keep?"))
        await client.chat(said(CID, "and you?", context=[ContextMessage(author="Ann", text="QXTHREAD is mine")]))
        bob_again = await client.chat(said(BOB, "tell me more"))
        retried = await client.chat(said(BOB, "", retry_of="last"))  # a /retry keeps the reference, not the text
        assert retried.turn_id
        # others' ratings of her reply, Cid's of Bob's, and her own of Bob's
        ratings = ((BOB, hers.turn_id, 1), (CID, hers.turn_id, -1), (CID, bob.turn_id, 1), (ANN, bob_again.turn_id, 1))
        for rater, turn_id, value in ratings:
            assert (await client.feedback(rate(rater, turn_id or "", value))).stored
        assert direct.turn_id and bob_again.turn_id

        # before: her words are in other members' kept turns (resolved), the cache, the training data
        assert PERSONA in (await store.turns.get(bob.turn_id or "")).prompt[0]["content"]  # type: ignore[union-attr]
        assert "QXPERSONA" in cached_text(brain) and "QXPERSONA" in await training_text(store)
        assert "QXTHREAD" not in cached_text(brain), "a prompt with others' thread context is not cached"
        for turn_id in (bob.turn_id, retried.turn_id):
            assert PERSONA in (await store.turns.get(turn_id or "")).prompt[0]["content"]  # type: ignore[union-attr]
        assert "QXPERSONA" not in str(await store.r.hgetall(f"oc:turnrec:{{{BOB.key}}}")), (
            "Bob's kept turns name her persona rather than copying it"
        )

        # her export lists every canary of hers that Redis holds, and the keys they are in
        in_redis = {name for name, canary in CANARIES.items() if canary in await all_text(store)}
        assert in_redis >= {"persona", "direct message", "group message", "fact"}
        export = await client.export(ANN)
        dumped = export.model_dump_json()
        assert {name for name, canary in CANARIES.items() if canary in dumped} >= in_redis
        assert [p.system_prompt for p in export.personas] == [PERSONA] and export.personas[0].in_use
        assert {t.turn_id for t in export.turns} == {direct.turn_id, hers.turn_id}
        assert [(m.message_id, m.turn_id) for m in export.messages] == [("9001", hers.turn_id)]
        assert export.chats["g1"].persona == "custom", "a group's persona is shown as the group's, not hers"
        assert all(t.prompt and t.reply for t in export.turns)
        # her own adapter's counts: her rating and Bob's of a reply it gave her (the tiny model has no adapter to
        # serve, so the turn is named as served by it)
        mine = f"{user_target(ANN.key)}@1"
        served = (await store.turns.get(direct.turn_id)).model_copy(update={"served_by": mine})  # type: ignore[union-attr]
        for rater, value in ((ANN, 1), (BOB, -1)):
            assert (await store.ratings.rate(served, rater.key, value, ttl_s=3600, ratings_kept=100)).kept
        assert await store.ratings.like_counts() == {"base": (3, 1), mine: (1, 1)}

        await client.forget(ANN)

        everything = await all_text(store)
        left = {name for name, canary in CANARIES.items() if canary in everything}
        assert left == set(), f"left in Redis after her forget: {left}"
        assert ANN.key not in everything
        assert not any(c in cached_text(brain) for c in CANARIES.values()), "left in the prefix cache"
        training = await training_text(store)
        assert not any(c in training for c in CANARIES.values()), "left in the training data"
        for turn_id in (bob.turn_id, retried.turn_id):
            assert await store.turns.get(turn_id or "") is None, "Bob's turns quoted her persona: they went with it"
        assert await store.ratings.of(BOB.key) == [], "ratings of her replies went"
        assert [r.turn_id for r in await store.ratings.of(CID.key)] == [bob.turn_id], "only ratings of her replies went"
        assert await store.ratings.of(ANN.key) == [], "her own ratings went"
        assert await store.ratings.like_counts() == {"base": (1, 0)}, (
            "the counts follow the ratings: hers, those of her replies and her adapter's are gone"
        )


async def test_a_card_persona_she_imported_leaves_no_trace_in_other_members_logs(brain, store) -> None:
    """Of the same class, not named by the issue: a chara_card_v2 card's character name is her words too, and the
    training log of every member who talks under it names the persona."""
    card = {"spec": "chara_card_v2", "spec_version": "2.0",
            "data": {"name": "QXCARDNAME", "description": "QXCARDTEXT keeps the lighthouse."}}  # fmt: skip
    async with BrainClient(brain.url, brain.api_key, retries=0) as client:
        await client.opt_in(BOB)
        await client.set_persona(
            PersonaSet(platform="telegram", user_id=ANN.user_id, chat_id="g2", chat_kind=ChatKind.group, card=card)
        )
        reply = await client.chat(said(BOB, "who are you?", chat="g2"))
        assert reply.persona.upper() == "QXCARDNAME", "Bob sees the card's character"
        assert await store.training_log.length(BOB.key) == 1
        await client.forget(ANN)
    everything = await all_text(store)
    assert "QXCARD" not in everything.upper()
    assert await store.training_log.length(BOB.key) == 1, "Bob's own log stays"
