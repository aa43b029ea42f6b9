"""A terminal chat with the brain: tokens shown as they arrive, the same commands as every platform, and /good and
/bad to rate the last reply (where other platforms take reactions)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlparse

from rich.console import Console

from bot.client import BrainClient, BrainError
from bot.commands import RATING_HINT, Speaker, friendly_error, parse_command, run_command
from bot.feedback import DISLIKE, LIKE, NOT_RATEABLE, rate, retry_request, thanks
from brain.api_models import ChatKind, ChatReply, ChatRequest
from brain.refusals import Refusal
from brain.settings import Settings

PLATFORM = "console"
CONSOLE_COMMANDS = {"good": "I liked your last reply", "bad": "I did not like your last reply", "quit": "Leave"}
BRAIN_LOG = "var/brain.log"
NOTHING_TO_RATE = "Nothing to rate yet: /good and /bad rate my last reply."
# the console takes no reactions: its help says how to rate here instead
RATING_HINT_HERE = "Type /good or /bad to rate my last reply: I learn from what members like."
console = Console(highlight=False)


@dataclass
class Session:
    """One member at the terminal, and the reply that /good and /bad rate."""

    who: Speaker
    last_turn: str | None = None


async def start_brain_if_needed(client: BrainClient, brain_url: str, timeout_s: float = 900) -> subprocess.Popen | None:
    """Start `brain serve --start-redis` (which converts the default model on first use) unless one answers."""
    if await client.ready():
        return None
    url = urlparse(brain_url)
    args = [sys.executable, "-m", "brain", "serve", "--start-redis",
            "--host", url.hostname or "127.0.0.1", "--port", str(url.port or 8080)]  # fmt: skip
    console.print(f"[dim]No brain answers at {brain_url}; starting one (logs in {BRAIN_LOG}).[/dim]")
    os.makedirs(os.path.dirname(BRAIN_LOG), exist_ok=True)
    log = open(BRAIN_LOG, "ab")  # noqa: SIM115 - lives as long as the child
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    with console.status("Loading the model (the first run converts it once, with progress in var/brain.log)..."):
        while not await client.ready():
            if process.poll() is not None:
                raise Refusal(f"the brain did not start: {last_line(BRAIN_LOG)} (more in {BRAIN_LOG})")
            if loop.time() > deadline:
                stop_brain(process)
                raise Refusal(f"the brain did not become ready in time; see {BRAIN_LOG}")
            await asyncio.sleep(0.5)
    return process


def last_line(path: str) -> str:
    with open(path, "rb") as log:
        lines = log.read().decode(errors="replace").strip().splitlines()
    return lines[-1].removeprefix("error: ") if lines else "it wrote nothing"


async def run_console(
    settings: Settings, *, brain_url: str | None = None, start_brain: bool = False, user_id: str = "local"
) -> int:
    url = brain_url or settings.bot.brain_url
    client = BrainClient.from_settings(settings, url)
    if start_brain:
        process = await start_brain_if_needed(client, url)
    else:
        process = None
        if not await client.alive():
            await client.aclose()
            raise Refusal(f"no brain answers at {url}: start one (brain serve --start-redis), or add --start-brain")
    who = Speaker(PLATFORM, user_id, chat_id=user_id, chat_kind=ChatKind.direct, display_name=user_id,
                  is_operator=True)  # fmt: skip
    session = Session(who)
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
            await handle_line(client, session, line)
    finally:
        await client.aclose()
        if process is not None:
            stop_brain(process)


def stop_brain(process: subprocess.Popen) -> None:
    """Stop the brain this console started; it stops the redis-server it started in turn, given the time."""
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def handle_line(client: BrainClient, session: Session, line: str) -> None:
    """Answer one line typed at the terminal: a command, a rating, /retry, or a message for the model."""
    who = session.who
    command = parse_command(line)
    if command is None:
        request = ChatRequest(
            platform=who.platform, user_id=who.user_id, chat_id=who.chat_id, display_name=who.display_name, text=line
        )
        await _stream(client, session, request)
        return
    name, _ = command
    if name in ("good", "bad"):
        await _rate(client, session, LIKE if name == "good" else DISLIKE)
        return
    if name == "retry":
        await _stream(client, session, retry_request(who, of_message=None, request_id=None))
        return
    reply = await run_command(client, who, *command)
    if reply is not None:
        console.print(reply.text.replace(RATING_HINT, RATING_HINT_HERE))
        for button in reply.buttons:
            console.print(f"  [dim]-> {button.command}[/dim]  ({button.label})")
        if name in ("help", "start"):
            console.print("\n".join(f"/{n} - {d}" for n, d in CONSOLE_COMMANDS.items()))


async def _stream(client: BrainClient, session: Session, request: ChatRequest) -> None:
    console.print("[bold magenta]bot>[/bold magenta] ", end="")
    try:
        async for item in client.chat_stream(request):
            if isinstance(item, str):
                console.out(item, end="")
            elif isinstance(item, ChatReply) and item.turn_id is not None:
                session.last_turn = item.turn_id
        console.print()
    except BrainError as exc:
        console.print(f"\n[red]{friendly_error(exc)}[/red]")


async def _rate(client: BrainClient, session: Session, rating: int) -> None:
    if session.last_turn is None:
        console.print(NOTHING_TO_RATE)
        return
    try:
        result = await rate(client, session.who, rating, kind="command", turn_id=session.last_turn)
    except BrainError as exc:
        console.print(f"[red]{friendly_error(exc)}[/red]")
        return
    console.print(thanks(result) if result is not None else NOT_RATEABLE)
