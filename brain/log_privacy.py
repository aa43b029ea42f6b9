"""Logs at INFO and above name no member: not by id, not by the hash their adapter is named by.

Every log record of INFO or above passes through ``redact`` (installed as the record factory by ``install``): a user
adapter's name (``user-<hash>``) and a member's id in a request path (``/v1/users/telegram/123/...``) become an alias
that stands for the same member until the process ends (``member-1``, ``member-2``…; a forget does not reuse one).
DEBUG records are left as they are: running at DEBUG adds the real names, and the alias of each as it is first given.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable
from typing import Any

# a user target (brain/adapters.py USER_PREFIX + 16 hex digits), with any @version after it kept; a member id in a
# /v1/users/PLATFORM/ID path
MEMBER = re.compile(r"\buser-[0-9a-f]{16}\b|(?<=/v1/users/)[a-z][a-z0-9_-]{0,31}/[A-Za-z0-9_.:@-]{1,128}")
ACCESS_LOGGER = "uvicorn.access"
log = logging.getLogger("brain.log_privacy")


class Aliases:
    """A stable, meaningless name per member for the life of the process (a per-run alias)."""

    def __init__(self, prefix: str = "member") -> None:
        self.prefix = prefix
        self._names: dict[str, str] = {}
        self._count = itertools.count(1)

    def __call__(self, name: str) -> str:
        alias = self._names.get(name)
        if alias is None:
            alias = self._names[name] = f"{self.prefix}-{next(self._count)}"
            log.debug("%s stands for %s", alias, name)
        return alias


ALIASES = Aliases()


def redact(text: str, aliases: Callable[[str], str] = ALIASES) -> str:
    """``text`` with every member identifier replaced by its alias."""
    return MEMBER.sub(lambda match: aliases(match.group(0)), text)


def _redacted(record: logging.LogRecord) -> logging.LogRecord:
    if record.levelno < logging.INFO:
        return record
    args: Any = record.args
    if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
        # uvicorn's access formatter reads its five arguments by position: only the path changes
        record.args = (args[0], args[1], redact(str(args[2])), args[3], args[4])
        return record
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed record is logging's to report, not ours
        return record
    redacted = redact(message)
    if redacted != message:
        record.msg, record.args = redacted, ()
    return record


def install() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_members", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redacted(previous(*args, **kwargs))

    factory.redacts_members = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
