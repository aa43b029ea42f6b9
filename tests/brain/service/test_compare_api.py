"""'Which reply do you prefer?': a member who opted in and agreed is now and then answered twice, and their
choice becomes one preference pair for the nightly run; nobody else is ever asked, and nothing else is kept.
A real brain (tiny model) over a real redis-server, through the bots' own client."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.client import BrainClient, BrainError
from brain.api_feedback import ComparisonRequest
from brain.api_models import ChatRequest, UserRef
from brain.store import Store
from brain.store.client import connect
from tests.support.brain_server import running_brain
from trainer.core.examples import ChatRenderer
from trainer.core.models import load_model
from trainer.nightly.ratings import preference_examples

ANN = UserRef(platform="telegram", user_id="1")  # opted in, and agreed to comparisons
BOB = UserRef(platform="telegram", user_id="2")  # opted in only


def message(text: str, user: UserRef, **kw) -> ChatRequest:
    return ChatRequest(platform=user.platform, user_id=user.user_id, chat_id="c1", text=text, **kw)


def choice(user: UserRef, chosen: str, rejected: str) -> ComparisonRequest:
    return ComparisonRequest(
        platform=user.platform, user_id=user.user_id, chat_id="c1", chosen_turn_id=chosen, rejected_turn_id=rejected
    )


@pytest.fixture
def comparing_brain(tmp_path: Path, tiny_model_dir: Path):
    with running_brain(tmp_path, tiny_model_dir, feedback={"compare_share": 1.0}) as handle:
        yield handle


async def test_a_members_choice_between_two_replies_becomes_one_preference_pair(
    comparing_brain, tiny_model_dir: Path
) -> None:
    async with BrainClient(comparing_brain.url, comparing_brain.api_key, retries=0) as client:
        with pytest.raises(BrainError) as refused:  # not opted in: cannot agree
            await client.agree_to_compare(ANN, True)
        assert refused.value.status == 409
        for user in (ANN, BOB):
            await client.opt_in(user)
        state = await client.agree_to_compare(ANN, True)
        assert state.agreed and state.opted_in and state.share == 1.0

        first = await client.chat(message("Tell me about the sea.", ANN))
        assert first.compare and first.turn_id
        second = await client.chat(message("", ANN, retry_of=first.turn_id))
        assert not second.compare and second.turn_id

        result = await client.compare(choice(ANN, second.turn_id, first.turn_id))
        assert result.stored, result.reason

        # Bob did not agree: never asked, and a choice he sends anyway is refused and changes nothing
        bobs = await client.chat(message("Tell me about trains.", BOB))
        assert not bobs.compare and bobs.turn_id
        again = await client.chat(message("", BOB, retry_of=bobs.turn_id))
        with pytest.raises(BrainError) as not_agreed:
            await client.compare(choice(BOB, again.turn_id or "", bobs.turn_id))
        assert not_agreed.value.status == 403
        # a reply of someone else's cannot be chosen
        with pytest.raises(BrainError) as not_theirs:
            await client.compare(choice(ANN, bobs.turn_id, first.turn_id))
        assert not_theirs.value.status == 404

        # withdrawing the agreement ends the comparisons
        assert not (await client.agree_to_compare(ANN, False)).agreed
        assert not (await client.chat(message("Tell me about bread.", ANN))).compare

    store = Store(connect(comparing_brain.redis.url))
    try:
        rated = [r async for r in store.ratings.rated_turns()]
        like_counts = await store.ratings.like_counts()
    finally:
        await store.close()
    assert sorted((r.turn.turn_id, r.score) for r in rated) == sorted([(second.turn_id, 1), (first.turn_id, -1)])
    # a preference, not a like: no version's like-rate counts it, and the chosen reply is not imitated as liked
    assert like_counts == {} and all(r.choice for t in rated for r in t.ratings)
    renderer = ChatRenderer(load_model(str(tiny_model_dir)).tokenizer, max_tokens=256)
    examples = preference_examples(renderer, rated, max_pairs=6)
    assert len(examples.pairs) == 1 and not examples.rated  # one DPO pair, the chosen reply first
    assert examples.liked == []
    pair = examples.pairs[0]
    chosen = renderer.tokenizer.decode(
        [t for t, y in zip(pair.chosen.ids, pair.chosen.labels, strict=True) if y != -100]
    )
    assert second.reply.strip() in chosen
