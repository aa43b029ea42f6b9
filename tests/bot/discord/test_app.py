"""Running `bot discord`: what the operator is told when the token or the portal settings are missing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.discord.app import run_discord
from brain.refusals import Refusal
from brain.settings import Settings
from tests.support.discord_api import MESSAGE_CONTENT_INTENT, LocalDiscord


def test_without_a_token_the_operator_is_told_where_it_goes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OWNCHAT_DISCORD_TOKEN", raising=False)

    with pytest.raises(Refusal) as stopped:
        run_discord(Settings())

    assert "OWNCHAT_DISCORD_TOKEN" in str(stopped.value)


async def test_the_bot_asks_for_message_content_and_says_how_to_enable_it_when_refused(
    monkeypatch: pytest.MonkeyPatch, discord_endpoints_restored: None, unused_port: int
):
    monkeypatch.setenv("OWNCHAT_DISCORD_TOKEN", "local-token")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # `bot discord` sets up logging for the process
    monkeypatch.setattr(root, "level", root.level)
    async with LocalDiscord(message_content_enabled=False) as local:
        discord_config = {"api_base": local.api_base, "gateway_url": local.gateway_url}
        settings = Settings(bot={"brain_url": f"http://127.0.0.1:{unused_port}", "discord": discord_config})

        with pytest.raises(Refusal) as stopped:
            # `bot discord` runs its own event loop, so it gets a thread of its own here
            await asyncio.to_thread(run_discord, settings)

    assert local.identifies[0]["intents"] & MESSAGE_CONTENT_INTENT
    assert "enable 'Message Content Intent'" in str(stopped.value)
