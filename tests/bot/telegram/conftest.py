"""The real Telegram Application against a local Bot API and, unless a test says otherwise, the fake brain."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from telegram.ext import Application

from bot.client import BrainClient
from bot.telegram.app import build_application, running
from tests.bot.telegram.settings_for_tests import bot_settings
from tests.support.fake_brain import API_KEY, FakeBrain
from tests.support.telegram_api import TelegramApiServer

StartBot = Callable[..., Awaitable[Application]]


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramApiServer]:
    async with TelegramApiServer() as server:
        yield server


@pytest.fixture
async def start_bot(telegram: TelegramApiServer, fake_brain: FakeBrain) -> AsyncIterator[StartBot]:
    """Starts the real Application against the local Bot API and a brain (the fake unless told)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *, brain_url: str | None = None, api_key: str = API_KEY, client_timeout: float = 10.0, **tg: Any
        ) -> Application:
            settings = bot_settings(telegram, brain_url or fake_brain.url, **tg)
            client = BrainClient(settings.bot.brain_url, api_key, timeout=client_timeout, retries=2, backoff_s=0.01)
            stack.push_async_callback(client.aclose)
            application = build_application(settings, client)
            await stack.enter_async_context(running(application, settings))
            return application

        yield start
