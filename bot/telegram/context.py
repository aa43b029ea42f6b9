"""What every handler needs, kept in PTB's bot_data under one key."""

from __future__ import annotations

from dataclasses import dataclass

from telegram.ext import ContextTypes

from bot.client import BrainClient
from bot.telegram.pacing import ChatPacer
from brain.settings import TelegramSettings

DEPS_KEY = "ownchat"


@dataclass
class Deps:
    client: BrainClient
    settings: TelegramSettings
    pacer: ChatPacer

    @property
    def parse_mode(self) -> str | None:
        return None if self.settings.parse_mode == "plain" else self.settings.parse_mode


def deps(context: ContextTypes.DEFAULT_TYPE) -> Deps:
    return context.bot_data[DEPS_KEY]
