"""What every command group shares: errors shown as the user's mistake, and options whose default and help
come from a config model's field."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console

err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Bad input, or a Redis that does not answer, ends the command with its message and exit status 2, not a
    traceback."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from trainer.errors import TrainerInputError

    try:
        yield
    except TrainerInputError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except RedisConnectionError as e:
        err_console.print(f"[bold red]error:[/] Redis does not answer: {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def option(model: type[BaseModel], field: str, *names: str, help: str | None = None, **kwargs: Any) -> Any:
    """A typer option that takes its default, and unless given its help, from ``model``'s ``field``."""
    info = model.model_fields[field]
    return typer.Option(info.default, *names, help=help or info.description, **kwargs)
