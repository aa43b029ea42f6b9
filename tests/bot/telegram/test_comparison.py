"""'Which reply do you prefer?' on Telegram: a member who opted in and agreed gets a second reply with two
buttons, and their press becomes one preference pair; a member who did not agree is never asked. The real
Application against the local Bot API and a real brain (tiny model) with comparisons on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.client import BrainClient
from bot.comparison import PREFER_FIRST, PREFER_SECOND, QUESTION
from brain.api_models import UserRef
from brain.store import Store
from brain.store.client import connect
from tests.support.brain_server import BrainHandle, running_brain
from tests.support.brain_state import turn_shown_by
from tests.support.eventually import eventually
from tests.support.telegram_api import TelegramApiServer, TgChat, TgMessage, TgUser


def member(user: TgUser) -> UserRef:
    return UserRef(platform="telegram", user_id=str(user.id))


@pytest.fixture
def comparing_brain(tmp_path: Path, tiny_model_dir: Path) -> Iterator[BrainHandle]:
    with running_brain(tmp_path, tiny_model_dir, feedback={"compare_share": 1.0}) as handle:
        yield handle


@pytest.fixture
async def api(comparing_brain: BrainHandle) -> AsyncIterator[BrainClient]:
    async with BrainClient(comparing_brain.url, comparing_brain.api_key, retries=0) as client:
        yield client


@pytest.fixture
async def store(comparing_brain: BrainHandle) -> AsyncIterator[Store]:
    s = Store(connect(comparing_brain.redis.url))
    yield s
    await s.close()


async def rated(store: Store) -> list[tuple[str, int]]:
    """What the nightly run would learn from: each rated turn and its score."""
    return sorted([(r.turn.turn_id, r.score) async for r in store.ratings.rated_turns()])


async def bot_said(telegram: TelegramApiServer, chat: TgChat, count: int) -> list[TgMessage]:
    def enough() -> list[TgMessage] | None:
        messages = telegram.bot_messages(chat)
        return messages if len(messages) >= count else None

    return await eventually(enough, f"{count} messages of the bot")


async def test_the_comparison_buttons_make_one_pair_only_for_members_who_agreed(
    telegram: TelegramApiServer, start_bot, comparing_brain: BrainHandle, api: BrainClient, store: Store
) -> None:
    await start_bot(brain_url=comparing_brain.url, api_key=comparing_brain.api_key)
    ann, bob = telegram.user("Ann"), telegram.user("Bob")
    ann_chat, bob_chat = telegram.private_chat(ann), telegram.private_chat(bob)
    for user in (ann, bob):
        await api.opt_in(member(user))

    # Ann agrees through the bot's own command and its button
    telegram.send_text(ann, ann_chat, "/compare")
    [offer] = await bot_said(telegram, ann_chat, 1)
    await eventually(lambda: offer.buttons, "the /compare buttons")
    telegram.press(ann, offer, "Yes, ask me")
    await telegram.wait_for_text(
        ann_chat, "Thanks: now and then (about 100% of your messages) I'll ask which reply you prefer."
    )

    seen = len(telegram.bot_messages(ann_chat))
    telegram.send_text(ann, ann_chat, "Tell me about the sea")
    messages = await bot_said(telegram, ann_chat, seen + 2)
    first, question = messages[seen], messages[-1]
    assert question.text.startswith(QUESTION)
    await eventually(lambda: [label for label, _ in question.buttons] == [PREFER_FIRST, PREFER_SECOND], "two buttons")

    stranger = telegram.press(bob, question, PREFER_SECOND)  # not Bob's to answer
    answer = await eventually(lambda: telegram.callback_answers[stranger], "Bob told")
    assert "Only the member who asked" in answer["text"]

    query = telegram.press(ann, question, PREFER_SECOND)
    answer = await eventually(lambda: telegram.callback_answers[query], "Ann told")
    assert answer["text"].startswith("Thanks: your choice is kept")
    first_turn = await turn_shown_by(store, "telegram", ann_chat.id, first.message_id)
    pairs = await rated(store)
    assert len(pairs) == 2 and (first_turn.turn_id, -1) in pairs  # the second reply liked, the first not
    await eventually(lambda: not question.buttons, "the buttons gone once answered")

    # Bob never agreed: one reply, no question
    telegram.send_text(bob, bob_chat, "Tell me about trains")
    await telegram.wait_for_reply(bob_chat, what="Bob's answer")
    await eventually(lambda: len(telegram.bot_messages(bob_chat)) == 1, "only the one reply")
    assert not any(m.text.startswith(QUESTION) for m in telegram.bot_messages(bob_chat))
    assert await rated(store) == pairs
