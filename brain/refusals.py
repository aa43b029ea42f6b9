"""Refusing to start, in one line: every command line (brain, bot, trainer) ends a start it cannot make with one
sentence on stderr that says what to fix, and a non-zero exit status, never a traceback.

Torch-free and redis-free: the bots import it.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import typer

from brain.settings import SECRET_NAMES, Settings, config_path, load_settings

# the exit status of a refusal: the operator has something to fix before a retry can help (as typer's usage errors)
REFUSED = 2


class Refusal(Exception):
    """A reason not to start that the operator can fix; its message is the one line they see."""


class RefusingTyper(typer.Typer):
    """A typer app whose commands refuse in one line: a Refusal raised anywhere in a command ends it so."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Refusal as refusal:
            refuse(str(refusal))


def refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(REFUSED)


def settings_or_refuse() -> Settings:
    """The effective settings, or a Refusal that names what is wrong with them."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError
    from yaml import YAMLError

    try:
        return load_settings()
    except ValidationError as error:
        raise Refusal(f"bad settings: {'; '.join(_problem(e) for e in error.errors())}") from None
    except YAMLError as error:
        raise Refusal(f"bad settings: {config_path()} is not valid YAML: {' '.join(str(error).split())}") from None
    except (FileNotFoundError, ValueError, SettingsError) as error:
        raise Refusal(f"bad settings: {' '.join(str(error).split())}") from None


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    # a value is shown where it helps, never a secret's
    shown = not isinstance(value, dict) and not any(part in SECRET_NAMES or part == "secrets" for part in error["loc"])
    return f"{where or 'settings'}: {error['msg']}" + (f" (got {value!r})" if shown else "")


def check_port_free(host: str, port: int, what: str) -> None:
    """Refuse before any slow start (a model load) when another process holds the port."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise Refusal(f"cannot listen on {host}:{port}: {error.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and aiohttp bind
        try:
            probe.bind(address)
        except OSError as error:
            raise Refusal(
                f"cannot listen on {host}:{port} ({error.strerror}): another process holds the port; stop it or "
                f"give {what} another port"
            ) from None
