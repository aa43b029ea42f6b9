"""What the adapter takes from discord.py past its documented API (bot.discord.private_api): its endpoints.

discord.py keeps one REST base and gateway per process. A bot pointed at another API takes them while it runs,
gives them back when it closes, and a bot against yet another API is refused meanwhile; a discord.py release that
moves them is named, rather than set to no effect (the bot would then talk to Discord itself)."""

from __future__ import annotations

import pytest
from discord.http import Route

from bot.client import BrainClient
from bot.discord import private_api
from bot.discord.app import make_bot
from bot.discord.private_api import DiscordLibraryChanged, Endpoints, EndpointsTaken
from brain.settings import Settings
from tests.bot.discord.test_messages import answered
from tests.support.discord_api import LocalDiscord
from tests.support.fake_brain import API_KEY, FakeBrain


def test_the_installed_discord_py_keeps_its_endpoints_where_the_adapter_sets_them() -> None:
    # fails with what moved when a discord.py release changes it: bot/discord/private_api.py must follow
    private_api.check_library()


def test_an_endpoint_discord_py_no_longer_keeps_there_is_named_and_left_alone(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delattr(Route, "BASE")  # as a release that builds its URLs otherwise would

    with pytest.raises(DiscordLibraryChanged, match=r"Route\.BASE"):
        private_api.take(Endpoints("http://127.0.0.1:9/api/v10", None))

    assert private_api.pointed_at() is None
    assert not hasattr(Route, "BASE"), "nothing was set"


async def test_a_bot_points_discord_py_at_its_api_only_while_it_runs_and_alone(
    local_discord: LocalDiscord, fake_brain: FakeBrain, start_bot
):
    discords_own = Route("GET", "/users/@me").url
    ada = local_discord.add_user("ada")
    dm = local_discord.dm(ada)
    bot = await start_bot(fake_brain.url)
    assert Route("GET", "/users/@me").url == f"{local_discord.api_base}/users/@me"

    other_api = {"api_base": "http://127.0.0.1:9/api/v10"}
    other = make_bot(
        Settings(bot={"brain_url": fake_brain.url, "discord": other_api}), BrainClient(fake_brain.url, API_KEY)
    )
    with pytest.raises(EndpointsTaken, match="process of its own"):
        await other.login("other-token")
    await other.close()
    await other.brain.aclose()

    await local_discord.say(ada, dm, "still here?")
    await answered(local_discord, dm, "You said: still here?")  # the running bot was not repointed

    await bot.close()
    assert Route("GET", "/users/@me").url == discords_own
