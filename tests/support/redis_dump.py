"""Everything a Redis holds, as one string to search: how a test shows that no key or value names a member."""

from __future__ import annotations

from brain.store import Store


async def all_text(store: Store) -> str:
    """Every key name and every value in Redis, as one string to search."""
    out = []
    async for key in store.r.scan_iter("*"):
        out.append(key)
        kind = await store.r.type(key)
        if kind == "string":
            out.append(str(await store.r.get(key)))
        elif kind == "hash":
            out.append(str(await store.r.hgetall(key)))
        elif kind == "list":
            out.append(str(await store.r.lrange(key, 0, -1)))
        elif kind == "set":
            out.append(str(await store.r.smembers(key)))
        elif kind == "zset":
            out.append(str(await store.r.zrange(key, 0, -1)))
        elif kind == "stream":
            out.append(str(await store.r.xrange(key)))
    return "\n".join(out)
