"""Settings of a bot under test: the local Bot API, a given brain, streamed edits unthrottled."""

from __future__ import annotations

from typing import Any

from brain.settings import Secrets, Settings
from tests.support.fake_brain import API_KEY
from tests.support.telegram_api import TelegramApiServer


def bot_settings(
    telegram: TelegramApiServer,
    brain_url: str,
    *,
    webhook_secret: str | None = None,
    retry_window_s: float = 0.0,
    **tg: Any,
) -> Settings:
    """Settings for a bot talking to the local Bot API; streamed edits unthrottled and a message the brain could
    not take answered with a notice at once, unless a test says otherwise."""
    # streaming by edits, which most tests watch; drafts are tested where a test asks for them
    telegram_settings = {"base_url": telegram.base_url, "edit_interval_s": 0.0, "drafts": False} | tg
    settings = Settings(bot={"brain_url": brain_url, "retry_window_s": retry_window_s, "telegram": telegram_settings})
    settings.secrets = Secrets(telegram_token=telegram.token, api_key=API_KEY, telegram_webhook_secret=webhook_secret)
    return settings
