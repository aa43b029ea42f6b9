"""`brain`: serve the model, print the effective settings, prepare the default model."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
from pathlib import Path
from urllib.parse import urlparse

import typer

from brain.refusals import Refusal, RefusingTyper, check_port_free, settings_or_refuse
from brain.settings import Settings

app = RefusingTyper(help="ownchat brain: the chat service.", no_args_is_help=True)


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
        raise Refusal(
            f"refusing to listen on {settings.brain.host} without an API key: set OWNCHAT_API_KEY "
            "(or listen on 127.0.0.1)"
        )
    if len(key.get_secret_value()) < MIN_EXPOSED_KEY_CHARS:
        raise Refusal(
            f"refusing to listen on {settings.brain.host} with an API key of fewer than {MIN_EXPOSED_KEY_CHARS} "
            "characters; make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def ensure_local_redis(settings: Settings) -> object | None:
    """Start a redis-server when none answers at a loopback redis.url; returns it (to stop later) or None."""
    from brain.redis_local import LocalRedis, RedisNotInstalledError, answers

    url = urlparse(settings.redis.url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    if answers(host, port):
        return None
    if not is_loopback(host):
        raise Refusal(f"no Redis answers at {settings.redis.url}, and --start-redis starts one only on this machine")
    typer.echo(f"No Redis at {host}:{port}; starting one (data in {settings.redis.local_dir}).")
    try:
        return LocalRedis(Path(settings.redis.local_dir), port).start()
    except RedisNotInstalledError as error:
        raise Refusal(str(error)) from None
    except RuntimeError as error:  # it exited at once: the port is taken, or its data directory is unusable
        raise Refusal(f"{error} (is the port taken? is {settings.redis.local_dir} writable?)") from None


def check_model(settings: Settings) -> Path:
    """Find the model before anything starts: a name that leads nowhere is the operator's to fix, in one line."""
    from brain.engine.model_loading import ModelNotFoundError, resolve_model

    try:
        return resolve_model(settings.model.name, settings.model.cache_dir)
    except ModelNotFoundError as error:
        raise Refusal(str(error)) from None


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

    settings = settings_or_refuse()
    if host:
        settings.brain.host = host
    if port:
        settings.brain.port = port
    if model:
        settings.model.name = model
    check_exposure(settings)
    check_port_free(settings.brain.host, settings.brain.port, "the brain (--port, or brain.port)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_model(settings)
    local_redis = ensure_local_redis(settings) if start_redis else None
    # uvicorn shuts down gracefully on SIGTERM, then raises it again; with the default action that would end the
    # process before the redis-server started above is stopped, so it ends as an exit instead
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        config = uvicorn_config(
            create_app(settings), settings.limits, host=settings.brain.host, port=settings.brain.port
        )
        uvicorn.Server(config).run()
    finally:
        if local_redis is not None:
            local_redis.stop()  # type: ignore[attr-defined]


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def config() -> None:
    """Print the effective settings (defaults < YAML < environment), secrets masked."""
    typer.echo(json.dumps(settings_or_refuse().masked(), indent=2))


@app.command("prepare-model")
def prepare_model(
    model: str = typer.Option(None, help="Model to resolve (default: settings model.name)."),
) -> None:
    """Resolve the model once (the default is converted into the local cache), so that serving starts fast."""
    settings = settings_or_refuse()
    if model:
        settings.model.name = model
    path = check_model(settings)
    typer.echo(f"model ready: {path}")


@app.command()
def openapi() -> None:
    """Print the OpenAPI document of the chat API."""
    from brain.service.app import create_app

    typer.echo(json.dumps(create_app(settings_or_refuse()).openapi(), indent=2))
