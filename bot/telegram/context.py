"""What every handler needs, as PTB's typed bot_data (`context.bot_data.client`, not `bot_data["…"]`)."""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardMarkup
from telegram.ext import CallbackContext, ContextTypes, ExtBot

from bot.client import BrainClient
from bot.feedback import ReactionRules, SettledRatings
from bot.settings import TelegramSettings
from bot.telegram.keyboards import rating_keyboard
from bot.telegram.outbox import ChatPacer


class BotData:
    """The bot's dependencies. PTB creates bot_data without arguments; build_application fills it in once."""

    client: BrainClient
    settings: TelegramSettings
    pacer: ChatPacer
    retry_window_s: float
    reactions: ReactionRules
    ratings: SettledRatings

    def provide(self, client: BrainClient, settings: TelegramSettings, *, retry_window_s: float) -> None:
        self.client = client
        self.settings = settings
        self.pacer = ChatPacer(settings.edit_interval_s)
        self.retry_window_s = retry_window_s
        self.reactions = ReactionRules.from_settings(settings.reactions)
        # one member's reactions on one message coalesce: the newest reaches the brain, once they settle
        self.ratings = SettledRatings()

    @property
    def rating_buttons(self) -> InlineKeyboardMarkup | None:
        """The 👍/👎 buttons under every reply, where the settings ask for them."""
        if not self.settings.rating_buttons:
            return None
        return rating_keyboard(self.settings.reactions.likes[0], self.settings.reactions.dislikes[0])

    @property
    def parse_mode(self) -> str | None:
        """The parse mode of the model's replies (commands' replies are plain text)."""
        return None if self.settings.parse_mode == "plain" else self.settings.parse_mode


Context = CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotData]
CONTEXT_TYPES = ContextTypes(bot_data=BotData)
