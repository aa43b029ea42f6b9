"""The store's Lua scripts, one ``NAME.lua`` file each, and how a repository runs them.

Every read-modify-write that must not interleave with another client's is one script over keys of one user (or one
key); global keys stay outside scripts, since in a cluster they live in other slots. Each file says which KEYS and
ARGV it takes. A line ``-- include: LIB.lua`` stands for that file's text: a Lua function several scripts share.
A script's text is read from the package once per process; each repository registers the scripts it runs with its
client (redis-py's register_script: EVALSHA, loading the script on a server that lacks it).
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from typing import Any

from redis.commands.core import AsyncScript

_INCLUDE = re.compile(r"^-- include: (\w+)\.lua$", re.MULTILINE)


@functools.cache
def source(name: str) -> str:
    """The text of ``NAME.lua``, its includes put in."""
    text = (files(__package__) / f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda include: source(include.group(1)).rstrip("\n"), text)


def register(client: Any, name: str) -> AsyncScript:
    """``NAME.lua`` registered with the client: called as ``script(keys=..., args=...)``."""
    script: AsyncScript = client.register_script(source(name))
    return script


def queue(pipe: Any, script: AsyncScript, keys: list[str], args: list[Any]) -> None:
    """Queue a registered script on a pipeline. Its text travels with it, because a cluster pipeline cannot load
    scripts on the nodes the way a plain pipeline does before EVALSHA."""
    pipe.eval(script.script, len(keys), *keys, *args)
