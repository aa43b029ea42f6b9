"""Bots run in small CPU containers: no bot module may import torch, transformers or redis."""

from __future__ import annotations

import subprocess
import sys

BOT_MODULES = ["bot.cli", "bot.client", "bot.commands", "bot.console", "bot.telegram.app", "bot.discord.app"]


def test_bot_modules_import_no_torch_transformers_or_redis():
    code = (
        "import importlib, sys\n"
        f"for name in {BOT_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'redis') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == ""


def test_the_contract_module_is_torch_free():
    code = (
        "import sys, brain.api_models, brain.api_feedback, brain.api_openai\n"
        "import brain.settings, bot.settings, trainer.settings\n"
        "print('torch' in sys.modules or 'redis' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"
