"""Fixtures for the Discord adapter: a local Discord, the fake brain, and the real bot between them."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import discord
import pytest

import bot as bot_package
from bot.client import BrainClient
from bot.discord import private_api
from bot.discord.app import OwnchatBot, make_bot
from brain.settings import Settings
from tests.support.discord_api import LocalDiscord
from tests.support.eventually import eventually
from tests.support.fake_brain import API_KEY


@pytest.fixture
def discord_endpoints_restored() -> Iterator[None]:
    """discord.py keeps one REST base and gateway per process; a bot pointed elsewhere gives them back on close."""
    assert private_api.pointed_at() is None, "an earlier test left discord.py pointed elsewhere"
    yield
    assert private_api.pointed_at() is None, "a bot left discord.py pointed at the local Discord"


@pytest.fixture
async def local_discord(discord_endpoints_restored: None) -> AsyncIterator[LocalDiscord]:
    async with LocalDiscord() as local:
        yield local


StartBot = Callable[..., Awaitable[OwnchatBot]]


@pytest.fixture
async def start_bot(local_discord: LocalDiscord) -> AsyncIterator[StartBot]:
    """Start the real bot against the local Discord; it is closed (and checked closed) after the test."""
    running: list[tuple[OwnchatBot, asyncio.Task[None]]] = []

    async def start(
        brain_url: str, *, api_key: str = API_KEY, timeout_s: float = 10.0, retry_window_s: float = 0.0, **discord: Any
    ) -> OwnchatBot:
        # no gateway_url: the bot asks the local Discord's GET /gateway/bot for it, as it would ask Discord
        config = {"api_base": local_discord.api_base, "edit_interval_s": 0.0} | discord
        settings = Settings(bot={"brain_url": brain_url, "retry_window_s": retry_window_s, "discord": config})
        brain = BrainClient(brain_url, api_key, retries=2, backoff_s=0.01, timeout=timeout_s)
        # discord.py waits this long after the last GUILD_CREATE before it calls itself ready
        bot = make_bot(settings, brain, guild_ready_timeout=0.05)
        task = asyncio.create_task(bot.start("local-token"))
        running.append((bot, task))
        await eventually(lambda: bot.is_ready() or task.done(), "the bot getting ready")
        if task.done():
            task.result()  # raises what stopped the bot
        return bot

    yield start
    for running_bot, task in running:
        await running_bot.close()
        await eventually(task.done, "the bot stopping")
        task.result()  # it stopped cleanly
        await running_bot.brain.aclose()
        assert running_bot.is_closed()
    await eventually(lambda: not _bot_tasks(), "every task of the bot finished")
    # each heartbeat thread was told to stop on close; it wakes up to notice
    await eventually(lambda: not _heartbeats(), "the gateway heartbeat threads ending")


_BOT_CODE = (str(Path(discord.__file__).parent), str(Path(bot_package.__file__).parent))


def _bot_tasks() -> list[asyncio.Task[Any]]:
    """Unfinished tasks running discord.py's or the adapter's code."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code else ""
        if not task.done() and where.startswith(_BOT_CODE):
            found.append(task)
    return found


def _heartbeats() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("keep-alive") and t.is_alive()]


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
