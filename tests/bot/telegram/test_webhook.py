from __future__ import annotations

import httpx
import pytest

from bot.client import BrainClient
from bot.telegram.app import TelegramConfigError, build_application
from brain.redis_local import free_port
from tests.bot.telegram.settings_for_tests import bot_settings
from tests.support.fake_brain import FakeBrain
from tests.support.telegram_api import TelegramApiServer

SECRET = "a-webhook-secret_42"


async def test_in_webhook_mode_telegram_posts_updates_with_the_secret_and_gets_answers(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram/hook"
    await start_bot(
        mode="webhook", webhook_url=hook, webhook_listen="127.0.0.1", webhook_port=port, webhook_secret=SECRET
    )
    registered = telegram.calls_to("setWebhook")[-1].params
    assert (registered["url"], registered["secret_token"]) == (hook, SECRET)
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)

    telegram.send_text(ana, chat, "hello by webhook")

    await telegram.wait_for_text(chat, "You said: hello by webhook")
    assert not telegram.calls_to("getUpdates")


async def test_the_webhook_refuses_posts_without_the_secret(
    telegram: TelegramApiServer, fake_brain: FakeBrain, start_bot
):
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram/hook"
    await start_bot(
        mode="webhook", webhook_url=hook, webhook_listen="127.0.0.1", webhook_port=port, webhook_secret=SECRET
    )
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)
    forged = telegram.message_update(ana, chat, "forged")

    async with httpx.AsyncClient() as http:
        without = await http.post(hook, json=forged)
        wrong = await http.post(hook, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"})

    assert (without.status_code, wrong.status_code) == (403, 403)
    telegram.send_text(ana, chat, "the real one")
    await telegram.wait_for_text(chat, "You said: the real one")
    assert [r.text for r in fake_brain.requests] == ["the real one"]


@pytest.mark.parametrize(
    ("secret", "url", "problem"),
    [
        (None, "https://bot.example.org/hook", "OWNCHAT_TELEGRAM_WEBHOOK_SECRET"),
        ("has spaces", "https://bot.example.org/hook", "must be 1 to 256 characters"),
        (SECRET, None, "webhook_url"),
    ],
)
async def test_webhook_mode_refuses_to_start_without_a_url_and_a_valid_secret(
    telegram: TelegramApiServer, secret: str | None, url: str | None, problem: str
):
    settings = bot_settings(telegram, "http://127.0.0.1:9", mode="webhook", webhook_url=url, webhook_secret=secret)
    async with BrainClient("http://127.0.0.1:9") as client:
        with pytest.raises(TelegramConfigError, match=problem):
            build_application(settings, client)


async def test_no_token_is_a_clear_error(telegram: TelegramApiServer):
    settings = bot_settings(telegram, "http://127.0.0.1:9")
    settings.secrets.telegram_token = None
    async with BrainClient("http://127.0.0.1:9") as client:
        with pytest.raises(TelegramConfigError, match="OWNCHAT_TELEGRAM_TOKEN"):
            build_application(settings, client)
