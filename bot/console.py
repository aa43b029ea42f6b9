"""A terminal chat with the brain: tokens shown as they arrive, the same commands as every platform."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from urllib.parse import urlparse

from rich.console import Console

from bot.client import BrainClient, BrainError
from bot.commands import Speaker, friendly_error, parse_command, run_command
from brain.api_models import ChatKind, ChatRequest
from brain.settings import Settings

PLATFORM = "console"
console = Console(highlight=False)


async def start_brain_if_needed(client: BrainClient, brain_url: str, timeout_s: float = 900) -> subprocess.Popen | None:
    """Start `brain serve --start-redis` (which converts the default model on first use) unless one answers."""
    if await client.ready():
        return None
    url = urlparse(brain_url)
    args = [sys.executable, "-m", "brain", "serve", "--start-redis",
            "--host", url.hostname or "127.0.0.1", "--port", str(url.port or 8080)]  # fmt: skip
    console.print(f"[dim]No brain answers at {brain_url}; starting one (logs in var/brain.log).[/dim]")
    os.makedirs("var", exist_ok=True)
    log = open("var/brain.log", "ab")  # noqa: SIM115 - lives as long as the child
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    with console.status("Loading the model (the first run converts it once, with progress in var/brain.log)..."):
        while not await client.ready():
            if process.poll() is not None:
                raise SystemExit(f"the brain exited with code {process.returncode}; see var/brain.log")
            if loop.time() > deadline:
                process.terminate()
                raise SystemExit("the brain did not become ready in time; see var/brain.log")
            await asyncio.sleep(0.5)
    return process


async def run_console(
    settings: Settings, *, brain_url: str | None = None, start_brain: bool = False, user_id: str = "local"
) -> int:
    url = brain_url or settings.bot.brain_url
    client = BrainClient.from_settings(settings, url)
    process = await start_brain_if_needed(client, url) if start_brain else None
    who = Speaker(PLATFORM, user_id, chat_id=user_id, chat_kind=ChatKind.direct, display_name=user_id,
                  is_operator=True)  # fmt: skip
    console.print(f"[bold]ownchat[/bold] at {url}. Type a message, /help for commands, /quit to leave.")
    try:
        while True:
            try:
                line = await asyncio.to_thread(console.input, "[bold cyan]you>[/bold cyan] ")
            except (EOFError, KeyboardInterrupt):
                console.print()
                return 0
            if not line.strip():
                continue
            if line.strip() in ("/quit", "/exit"):
                return 0
            await handle_line(client, who, line)
    finally:
        await client.aclose()
        if process is not None:
            process.terminate()
            process.wait(10)


async def handle_line(client: BrainClient, who: Speaker, line: str) -> None:
    command = parse_command(line)
    if command is not None:
        reply = await run_command(client, who, *command)
        if reply is not None:
            console.print(reply.text)
            for button in reply.buttons:
                console.print(f"  [dim]-> {button.command}[/dim]  ({button.label})")
        return
    request = ChatRequest(
        platform=who.platform,
        user_id=who.user_id,
        chat_id=who.chat_id,
        display_name=who.display_name,
        text=line,
    )
    console.print("[bold magenta]bot>[/bold magenta] ", end="")
    try:
        async for item in client.chat_stream(request):
            if isinstance(item, str):
                console.out(item, end="")
        console.print()
    except BrainError as exc:
        console.print(f"\n[red]{friendly_error(exc)}[/red]")
