"""The Telegram bot: the Application built in one place, and its run by long polling or webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from urllib.parse import urlparse

from telegram import BotCommand, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    MessageReactionHandler,
    Updater,
    filters,
)

from bot.client import BrainClient
from bot.commands import COMMANDS, OPERATOR_COMMANDS
from bot.telegram.addressing import AddressedToMe, CommandForMe
from bot.telegram.comparison import COMPARE_PATTERN, on_comparison
from bot.telegram.context import CONTEXT_TYPES
from bot.telegram.handlers import on_button, on_command, on_error, on_message, on_rating, on_reaction
from bot.telegram.keyboards import RATING_PATTERN
from bot.telegram.limits import WEBHOOK_SECRET_PATTERN
from bot.telegram.ordering import InTurn
from brain.refusals import Refusal, check_port_free
from brain.settings import Settings

log = logging.getLogger(__name__)

START_DESCRIPTION = "Say hello and see what I can do"
# reactions reach a bot in private chats, and in groups where it is an admin
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.MESSAGE_REACTION]


class TelegramConfigError(Refusal, ValueError):
    """The Telegram settings cannot work as given."""


def build_application(settings: Settings, client: BrainClient) -> Application:
    """The bot's Application and its routing table; nothing is fetched from Telegram yet."""
    tg = settings.bot.telegram
    if settings.secrets.telegram_token is None:
        raise TelegramConfigError("no Telegram token: set OWNCHAT_TELEGRAM_TOKEN to the token BotFather gave you")
    if tg.mode == "webhook":
        webhook_secret(settings)  # refuse a webhook anyone could post to, before anything starts
    builder = (
        ApplicationBuilder()
        .token(settings.secrets.telegram_token.get_secret_value())
        .job_queue(None)  # no scheduled jobs here
        .context_types(CONTEXT_TYPES)
        .concurrent_updates(InTurn())
    )
    if tg.base_url:
        builder = builder.base_url(tg.base_url)
    application = builder.build()
    application.bot_data.provide(client, tg, retry_window_s=settings.bot.retry_window_s)

    new = filters.UpdateType.MESSAGE
    application.add_handlers(
        [
            CommandHandler(["start", *COMMANDS, *OPERATOR_COMMANDS], on_command, filters=new),
            MessageHandler(new & filters.COMMAND & CommandForMe(), on_command),  # unknown ones: /help is offered
            MessageHandler(new & filters.TEXT & ~filters.COMMAND & AddressedToMe(tg.group_replies), on_message),
            MessageReactionHandler(on_reaction),
            CallbackQueryHandler(on_rating, pattern=RATING_PATTERN),
            CallbackQueryHandler(on_comparison, pattern=COMPARE_PATTERN),
            CallbackQueryHandler(on_button),
        ]
    )
    application.add_error_handler(on_error)
    return application


async def register_commands(application: Application) -> None:
    """The command menu users see when they type '/' (operator commands stay out of it)."""
    commands = [BotCommand("start", START_DESCRIPTION)]
    commands += [BotCommand(name, description) for name, description in COMMANDS.items()]
    await application.bot.set_my_commands(commands)


@contextlib.asynccontextmanager
async def running(application: Application, settings: Settings) -> AsyncIterator[Application]:
    """Fetch updates (long polling, or a webhook) and handle them until the block ends."""
    tg = settings.bot.telegram
    async with application:
        await register_commands(application)
        if tg.mode == "webhook":
            await _start_webhook(application, settings)
        else:
            await _updater(application).start_polling(allowed_updates=ALLOWED_UPDATES)
        await application.start()
        log.info("Telegram bot @%s is answering (%s)", application.bot.username, tg.mode)
        try:
            yield application
        finally:
            await _updater(application).stop()
            await application.stop()
            await application.bot_data.ratings.aclose()


async def _start_webhook(application: Application, settings: Settings) -> None:
    tg = settings.bot.telegram
    check_port_free(tg.webhook_listen, tg.webhook_port, "the webhook (bot.telegram.webhook_port)")
    await _updater(application).start_webhook(
        listen=tg.webhook_listen,
        port=tg.webhook_port,
        # Telegram posts to the public URL; a proxy in front usually keeps its path
        url_path=urlparse(tg.webhook_url or "").path.strip("/"),
        webhook_url=tg.webhook_url,
        secret_token=webhook_secret(settings),
        allowed_updates=ALLOWED_UPDATES,
    )


def _updater(application: Application) -> Updater:
    """The Updater that fetches updates; build_application always gives the Application one."""
    if application.updater is None:
        raise TelegramConfigError("this Application was built without an Updater, so it cannot fetch updates")
    return application.updater


def webhook_secret(settings: Settings) -> str:
    """The secret Telegram must echo in every webhook call; webhook mode refuses to run without one."""
    secret = settings.secrets.telegram_webhook_secret
    if not settings.bot.telegram.webhook_url:
        raise TelegramConfigError("webhook mode needs bot.telegram.webhook_url, the public HTTPS address of the bot")
    if secret is None:
        raise TelegramConfigError(
            "webhook mode needs OWNCHAT_TELEGRAM_WEBHOOK_SECRET, so that only Telegram can post updates"
        )
    if not WEBHOOK_SECRET_PATTERN.match(secret.get_secret_value()):
        raise TelegramConfigError(
            "OWNCHAT_TELEGRAM_WEBHOOK_SECRET must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -"
        )
    return secret.get_secret_value()


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the bot until `stop` is set (or SIGINT/SIGTERM), then close everything cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with BrainClient.from_settings(settings) as client:
        application = build_application(settings, client)
        async with running(application, settings):
            await stop.wait()


def run_telegram(settings: Settings) -> None:
    """`bot telegram`: answer on Telegram until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO, and Bot API URLs contain the token
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(serve(settings))
