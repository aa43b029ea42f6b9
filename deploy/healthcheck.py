#!/usr/bin/env python3
"""The health check of ownchat's container images: ``ownchat-healthcheck brain|bots|telegram|trainer``.

- ``brain``: the brain in this container answers ``GET /healthz`` on its port (settings ``brain.port``).
- ``bots``: the brain this bot talks to answers ``/healthz`` (settings ``bot.brain_url``).
- ``telegram``: as ``bots``, and in webhook mode the webhook port of this container accepts connections.
- ``trainer``: Redis answers at ``redis.url``, so the scheduler can take its lock and read the logs.

Exits 0 when healthy, else 1 with one line on stderr that says what is wrong. Standard library plus the
torch-free settings module, so it runs in every image, the slim bots image included.
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from urllib.parse import urlparse

from brain.redis_local import answers
from brain.settings import Settings, load_settings

TIMEOUT_S = 3.0


def http_ok(url: str) -> str | None:
    """None when ``url`` answers 200, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (http(s) from settings)
            return None if response.status == 200 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as error:
        return f"{url} answered {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"{url} is unreachable ({getattr(error, 'reason', error)})"


def port_open(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except OSError as error:
        return f"nothing accepts connections on {host}:{port} ({error})"


def check_brain(settings: Settings) -> str | None:
    return http_ok(f"http://127.0.0.1:{settings.brain.port}/healthz")


def check_bots(settings: Settings) -> str | None:
    return http_ok(settings.bot.brain_url.rstrip("/") + "/healthz")


def check_telegram(settings: Settings) -> str | None:
    problem = check_bots(settings)
    if problem is None and settings.bot.telegram.mode == "webhook":
        problem = port_open("127.0.0.1", settings.bot.telegram.webhook_port)
    return problem


def check_trainer(settings: Settings) -> str | None:
    url = urlparse(settings.redis.url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    if url.scheme == "rediss":  # TLS: a plain PING cannot be spoken here; a connection will do
        return port_open(host, port)
    return None if answers(host, port, timeout=TIMEOUT_S) else f"Redis does not answer at {host}:{port}"


CHECKS = {"brain": check_brain, "bots": check_bots, "telegram": check_telegram, "trainer": check_trainer}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in CHECKS:
        print(f"usage: ownchat-healthcheck {'|'.join(CHECKS)}", file=sys.stderr)
        return 2
    try:
        problem = CHECKS[argv[1]](load_settings())
    except Exception as error:  # a broken configuration is unhealthy, and says why
        problem = f"the settings do not load: {error}"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
