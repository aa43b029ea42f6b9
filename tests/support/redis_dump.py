"""Everything a Redis holds, as text to search: how a test shows that no key or value names a member.

Values are read by their type, never through DUMP: DUMP's serialization may compress a value, and a text in it
is then not found although it is there."""

from __future__ import annotations

from typing import Any

import redis

from brain.store import Store

# how each type's whole value is read (the same command names for redis-py's sync and async clients)
READ: dict[str, tuple[str, tuple[Any, ...]]] = {
    "string": ("get", ()),
    "hash": ("hgetall", ()),
    "list": ("lrange", (0, -1)),
    "set": ("smembers", ()),
    "zset": ("zrange", (0, -1)),
    "stream": ("xrange", ()),
}


async def all_text(store: Store) -> str:
    """Every key name and every value in Redis, as one string to search."""
    out = []
    async for key in store.r.scan_iter("*"):
        out.append(key)
        kind = await store.r.type(key)
        if kind in READ:
            name, args = READ[kind]
            out.append(str(await getattr(store.r, name)(key, *args)))
    return "\n".join(out)


def keys_holding(url: str, text: str) -> list[str]:
    """The keys whose value holds ``text``."""
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        held = []
        for key in r.scan_iter("*"):
            kind = str(r.type(key))
            if kind in READ and text in str(getattr(r, READ[kind][0])(key, *READ[kind][1])):
                held.append(key)
        return sorted(held)
    finally:
        r.close()
