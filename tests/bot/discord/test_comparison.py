"""'Which reply do you prefer?' on Discord: a member who opted in and agreed (/compare) gets a second reply with
two buttons, and their press becomes one preference pair; a member who did not agree is never asked, and
nobody else can answer for the member. The real bot against the local Discord and a real brain (tiny model)
with comparisons on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.client import BrainClient
from bot.comparison import NOT_YOURS, PREFER_FIRST, PREFER_SECOND, QUESTION
from brain.api_models import UserRef
from brain.store import Store
from brain.store.client import connect
from tests.support.brain_server import BrainHandle, running_brain
from tests.support.brain_state import turn_shown_by
from tests.support.discord_api import Channel, LocalDiscord, User
from tests.support.eventually import eventually


def member(user: User) -> UserRef:
    return UserRef(platform="discord", user_id=str(user.id))


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


async def bot_said(local_discord: LocalDiscord, channel: Channel, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        messages = local_discord.bot_messages(channel)
        return messages if len(messages) >= count else None

    return await eventually(enough, f"{count} messages of the bot")


def labels(message: dict[str, Any]) -> list[str]:
    return [c.get("label") for row in message.get("components", []) for c in row.get("components", [])]


async def test_the_comparison_buttons_make_one_pair_only_for_members_who_agreed(
    local_discord: LocalDiscord, start_bot, comparing_brain: BrainHandle, api: BrainClient, store: Store
) -> None:
    guild = local_discord.add_guild("Readers")
    channel = local_discord.add_channel(guild, "general")
    ann, bob = local_discord.add_user("ann"), local_discord.add_user("bob")
    for user in (ann, bob):
        local_discord.join(guild, user)
        await api.opt_in(member(user))
    await start_bot(comparing_brain.url, api_key=comparing_brain.api_key)

    agreed = await local_discord.slash(ann, channel, "compare", agree=True)
    [said] = await local_discord.wait_for_answers(agreed)
    assert "I'll ask which reply you prefer" in said["content"]

    await local_discord.say(ann, channel, f"{local_discord.mention()} tell me about rivers")
    first, question = await bot_said(local_discord, channel, 2)
    assert question["content"].startswith(QUESTION)
    assert labels(question) == [PREFER_FIRST, PREFER_SECOND]

    stranger = await local_discord.click(bob, int(question["id"]), PREFER_SECOND)  # not Bob's to answer
    [told] = await local_discord.wait_for_answers(stranger)
    assert told["content"] == NOT_YOURS

    pressed = await local_discord.click(ann, int(question["id"]), PREFER_SECOND)
    await eventually(
        lambda: any(m["content"].startswith("Thanks: your choice is kept") for m in local_discord.answers(pressed)),
        "Ann told her choice is kept",
    )
    first_turn = await turn_shown_by(store, "discord", channel.id, first["id"])
    pairs = await rated(store)
    assert len(pairs) == 2 and (first_turn.turn_id, -1) in pairs  # the second reply liked, the first not
    await eventually(lambda: not labels(local_discord.messages[int(question["id"])]), "the buttons gone")

    # Bob never agreed: one reply, no question
    seen = len(local_discord.bot_messages(channel))
    await local_discord.say(bob, channel, f"{local_discord.mention()} tell me about trains")
    await bot_said(local_discord, channel, seen + 1)
    await local_discord.say(bob, channel, f"{local_discord.mention()} and about boats")
    await bot_said(local_discord, channel, seen + 2)
    assert not any(m["content"].startswith(QUESTION) for m in local_discord.bot_messages(channel)[seen:])
    assert await rated(store) == pairs
