"""`bot`: the chat adapters and the terminal console."""

from __future__ import annotations

import asyncio

import typer

from brain.refusals import RefusingTyper, settings_or_refuse

app = RefusingTyper(help="ownchat chat adapters: Telegram, Discord and a terminal console.", no_args_is_help=True)


@app.command()
def console(
    brain_url: str = typer.Option(None, help="Brain to talk to (default: settings bot.brain_url)."),
    start_brain: bool = typer.Option(
        False, "--start-brain", help="Start Redis and a brain when none answers at the URL."
    ),
    embedded: bool = typer.Option(
        False, "--embedded", help="Run a brain inside this process (needs ownchat[brain]) instead of a service."
    ),
    user: str = typer.Option("local", help="Your user id on the console platform."),
) -> None:
    """Chat with the brain in the terminal, replies streamed as they are generated."""
    from bot.console import run_console

    settings = settings_or_refuse()
    if embedded:
        # only here does a bot process load the model: the console doubles as a one-process chat
        from brain.service.embedded import embedded_brain

        with embedded_brain(settings) as url:
            raise SystemExit(asyncio.run(run_console(settings, brain_url=url, user_id=user)))
    raise SystemExit(asyncio.run(run_console(settings, brain_url=brain_url, start_brain=start_brain, user_id=user)))


@app.command()
def telegram() -> None:
    """Run the Telegram bot (long polling, or webhook with bot.telegram.mode=webhook)."""
    from bot.telegram.app import run_telegram

    run_telegram(settings_or_refuse())


@app.command()
def discord() -> None:
    """Run the Discord bot."""
    from bot.discord.app import run_discord

    run_discord(settings_or_refuse())
