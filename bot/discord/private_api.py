"""The one place the Discord adapter reaches past discord.py's documented API: where its client connects.

discord.py (2.7) has no option for the REST base or the gateway a client talks to: every request's URL is built
from the class attribute `discord.http.Route.BASE`, and a client's first gateway connection goes to
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`. Both hold for every client of the process, so they cannot be
scoped to one. A bot pointed elsewhere (a proxy, a Discord-compatible API, the tests' local Discord) takes them
while it runs (`take`), and gives them back as discord.py had them when it closes (`give_back`); a bot pointed at
other endpoints is refused while one runs, rather than repointing a running bot behind its back. Where only the
REST base is given, the gateway is the one that API names for the bot (`GET /gateway/bot`), asked through
discord.py's HTTP client (`Client.http`, undocumented as well), so that the call carries the bot's token and obeys
its rate limits.

`check_library()` says what changed when a discord.py release moves any of this. The adapter's tests run it, and
so does every `take` before it sets anything: setting a class attribute that no longer exists works silently and
to no effect, and the bot would talk to Discord itself.
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route


class DiscordLibraryChanged(RuntimeError):
    """discord.py no longer keeps its endpoints where this module sets them."""


class EndpointsTaken(RuntimeError):
    """Another bot of this process runs against other endpoints; discord.py keeps one set per process."""


@dataclass(frozen=True)
class Endpoints:
    api_base: str | None  # None: Discord's own
    gateway_url: str | None  # None: the one the API names for the bot, once it is logged in


_holders: Counter[Endpoints] = Counter()
_discords_own: tuple[str, yarl.URL] | None = None  # discord.py's endpoints while others are in place


def check_library() -> None:
    """Raise DiscordLibraryChanged, naming what moved, unless discord.py keeps its endpoints where `take` sets them."""
    base = getattr(Route, "BASE", None)
    if not isinstance(base, str):
        raise DiscordLibraryChanged(f"discord.http.Route.BASE is {base!r}, no longer the REST base as a string")
    if Route("GET", "/gateway/bot").url != base + "/gateway/bot":
        raise DiscordLibraryChanged("discord.http.Route no longer builds its URL from Route.BASE")
    gateway = getattr(DiscordWebSocket, "DEFAULT_GATEWAY", None)
    if not isinstance(gateway, yarl.URL):
        raise DiscordLibraryChanged(f"discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY is {gateway!r}, not a URL")
    if "DEFAULT_GATEWAY" not in inspect.getsource(DiscordWebSocket.from_client):
        raise DiscordLibraryChanged("DiscordWebSocket.from_client no longer connects to DEFAULT_GATEWAY by default")
    if not inspect.iscoroutinefunction(getattr(HTTPClient, "get_bot_gateway", None)):
        raise DiscordLibraryChanged("discord.http.HTTPClient has no coroutine get_bot_gateway any more")


def take(endpoints: Endpoints) -> None:
    """Point discord.py at `endpoints` until `give_back(endpoints)`; bots with the same endpoints share them."""
    global _discords_own
    check_library()
    held = list(_holders)  # only endpoints taken and not given back are kept
    if held and endpoints not in held:
        raise EndpointsTaken(
            f"a bot of this process runs against {held[0]}; discord.py keeps one REST base and gateway per "
            f"process, so a bot against {endpoints} cannot run beside it: run it in a process of its own"
        )
    if not held:
        _discords_own = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        if endpoints.api_base:
            Route.BASE = endpoints.api_base.rstrip("/")
        if endpoints.gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(endpoints.gateway_url)
    _holders[endpoints] += 1


def give_back(endpoints: Endpoints) -> None:
    """End one `take(endpoints)`; once none holds them, discord.py's own endpoints are back."""
    global _discords_own
    if _holders[endpoints] <= 0:
        raise RuntimeError(f"{endpoints} were not taken")
    _holders[endpoints] -= 1
    if _holders[endpoints] == 0:
        del _holders[endpoints]
    if not _holders and _discords_own is not None:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = _discords_own
        _discords_own = None


def pointed_at() -> Endpoints | None:
    """The endpoints discord.py is pointed at in this process; None: its own."""
    return next(iter(_holders), None)


async def use_named_gateway(client: discord.Client, endpoints: Endpoints) -> None:
    """Connect to the gateway the API at `endpoints` names for the (logged in) client, as Discord names its own."""
    if _holders[endpoints] <= 0:
        raise RuntimeError(f"{endpoints} were not taken")
    answer = await client.http.get_bot_gateway()
    try:
        _, url, _ = answer
    except (TypeError, ValueError) as shape:
        message = f"HTTPClient.get_bot_gateway answered {answer!r}, not (shards, url, limits)"
        raise DiscordLibraryChanged(message) from shape
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
