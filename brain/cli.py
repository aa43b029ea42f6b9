"""`brain`: serve the model, print the effective settings, prepare the default model."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import typer

from brain.settings import Settings, load_settings

app = typer.Typer(help="ownchat brain: the chat service.", no_args_is_help=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MIN_EXPOSED_KEY_CHARS = 32


def check_exposure(settings: Settings) -> None:
    """A brain reachable from other machines needs a key long enough not to be guessed."""
    if is_loopback(settings.brain.host):
        return
    key = settings.secrets.api_key
    if key is None:
        raise typer.BadParameter(
            f"refusing to listen on {settings.brain.host} without an API key: set OWNCHAT_API_KEY "
            "(or listen on 127.0.0.1)"
        )
    if len(key.get_secret_value()) < MIN_EXPOSED_KEY_CHARS:
        raise typer.BadParameter(
            f"refusing to listen on {settings.brain.host} with an API key of fewer than {MIN_EXPOSED_KEY_CHARS} "
            "characters; make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def ensure_local_redis(settings: Settings) -> object | None:
    """Start a redis-server when none answers at a loopback redis.url; returns it (to stop later) or None."""
    from brain.redis_local import LocalRedis, answers

    url = urlparse(settings.redis.url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    if answers(host, port):
        return None
    if not is_loopback(host):
        raise typer.BadParameter(f"no Redis answers at {settings.redis.url}")
    typer.echo(f"No Redis at {host}:{port}; starting one (data in {settings.redis.local_dir}).")
    return LocalRedis(Path(settings.redis.local_dir), port).start()


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on (default: settings brain.host)."),
    port: int = typer.Option(None, help="Port (default: settings brain.port)."),
    model: str = typer.Option(None, help="Model: a Hugging Face id, a local directory or the default alias."),
    start_redis: bool = typer.Option(False, "--start-redis", help="Start a local redis-server if none answers."),
) -> None:
    """Serve the chat API with uvicorn."""
    # OpenMP threads that spin while waiting for work collapse when other processes share the cores (a bot,
    # Redis, a nightly run beside the brain); read by torch when it loads, so set before the app imports it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from brain.service.allocator import tune_allocator

    tune_allocator()

    from brain.service.app import create_app
    from brain.service.server import uvicorn_config

    settings = load_settings()
    if host:
        settings.brain.host = host
    if port:
        settings.brain.port = port
    if model:
        settings.model.name = model
    check_exposure(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    local_redis = ensure_local_redis(settings) if start_redis else None
    try:
        config = uvicorn_config(
            create_app(settings), settings.limits, host=settings.brain.host, port=settings.brain.port
        )
        uvicorn.Server(config).run()
    finally:
        if local_redis is not None:
            local_redis.stop()  # type: ignore[attr-defined]


@app.command()
def config() -> None:
    """Print the effective settings (defaults < YAML < environment), secrets masked."""
    typer.echo(json.dumps(load_settings().masked(), indent=2))


@app.command("prepare-model")
def prepare_model(
    model: str = typer.Option(None, help="Model to resolve (default: settings model.name)."),
) -> None:
    """Resolve the model once (the default is converted into the local cache), so that serving starts fast."""
    from brain.engine.model_loading import resolve_model

    settings = load_settings()
    path = resolve_model(model or settings.model.name, settings.model.cache_dir)
    typer.echo(f"model ready: {path}")


@app.command()
def openapi() -> None:
    """Print the OpenAPI document of the chat API."""
    from brain.service.app import create_app

    typer.echo(json.dumps(create_app(load_settings()).openapi(), indent=2))
