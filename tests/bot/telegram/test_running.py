from __future__ import annotations

import asyncio
import subprocess
import sys

from bot.telegram.app import serve
from tests.bot.telegram.settings_for_tests import bot_settings
from tests.support.eventually import eventually
from tests.support.fake_brain import FakeBrain
from tests.support.telegram_api import TelegramApiServer


async def test_serve_answers_until_told_to_stop(telegram: TelegramApiServer, fake_brain: FakeBrain):
    stop = asyncio.Event()
    bot = asyncio.create_task(serve(bot_settings(telegram, fake_brain.url), stop))
    ana = telegram.user("Ana")
    chat = telegram.private_chat(ana)

    telegram.send_text(ana, chat, "still there?")
    await telegram.wait_for_text(chat, "You said: still there?")
    stop.set()
    await eventually(bot.done, "the bot stopped")
    bot.result()  # it stopped cleanly

    # on its way out the bot told Telegram which updates it has handled, so none comes twice
    last = telegram.calls_to("getUpdates")[-1].params
    assert last["offset"] == 2 and last["timeout"] == 0


def test_the_telegram_bot_runs_without_torch_transformers_or_redis():
    code = "import sys, bot.telegram.app; print(sorted({'torch', 'transformers', 'redis'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
