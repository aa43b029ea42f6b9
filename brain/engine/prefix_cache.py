"""Keys and values of finished requests, kept so that the next prompt that starts the same way skips them.

A member's next message is their previous prompt, the reply, and a little more; every prompt of a
persona starts with its system prompt. So when a request finishes, the keys and values of its tokens
(prompt and reply) are kept here, under the adapter that computed them; a new request of the same
adapter reuses the longest prefix any entry shares with its prompt and prefills only the rest.
Matching is by token ids, so a prompt that changed (a summary fold, a ``/reset``) simply stops
matching, and its entry ages out.

A request reuses its own owner's entries as far as they match, but another owner's (or an anonymous
request's) only within the prefix the request says is public: the persona's system prompt, which every
member of the persona sends alike. Past it, a prompt holds what a member wrote, and reusing another
member's keys there would let anyone time whether a text was sent before.

Entries are found through a hash of each 16-token block of their ids, chained with the block before
it, so a lookup costs one hash per block of the prompt, whatever the number of entries. The cache
holds at most ``token_budget`` tokens and drops the least recently used entries to stay within it.
An entry is also dropped when a newer one extends it (the same conversation, one message on), when
its owner or any other member whose words it holds is forgotten (``drop_owner``; a group persona's author is one),
and when its adapter is unloaded (``keep_adapters``). A prompt holding words of members no forget could name (a
thread's context, known by display names only) is not kept at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

BLOCK = 16  # tokens per hashed block; shorter shared prefixes are not worth a lookup
# a contributor that stands for members the brain cannot name: an entry with one is never kept
UNKNOWN_CONTRIBUTOR = "*"


@dataclass
class PrefixEntry:
    adapter: str | None
    owner: str | None  # whose conversation it holds, for drop_owner; None for anonymous requests
    ids: tuple[int, ...]  # the tokens whose keys and values are held
    keys: list[torch.Tensor]  # per layer [kv heads, tokens, head dim]
    values: list[torch.Tensor]
    used: int = 0  # the tick of its last use
    key: int = -1
    contributors: frozenset[str] = frozenset()  # other members whose words it holds
    hashes: list[int] = field(default_factory=list)


class PrefixCache:
    """Finished requests' keys and values by adapter and token ids, least recently used dropped first."""

    def __init__(self, token_budget: int) -> None:
        self.token_budget = token_budget
        self.tokens = 0
        self._entries: dict[int, PrefixEntry] = {}
        self._index: dict[tuple[str | None, int], set[int]] = {}
        # the same, per owner: (adapter, owner, hash) -> entries of that owner
        self._owned: dict[tuple[str | None, str, int], set[int]] = {}
        self._ids = itertools.count()
        self._tick = itertools.count(1)
        # lookups, those that found a prefix, and the prompt tokens not prefilled thanks to them (for metrics)
        self.lookups = 0
        self.hits = 0
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(
        self, adapter: str | None, prompt: list[int], owner: str | None = None, public: int = 0
    ) -> tuple[PrefixEntry | None, int]:
        """The entry sharing the longest prefix with ``prompt`` and how many tokens it gives: any entry of
        ``owner`` (None: an anonymous request, which has no entries of its own), any other within the first
        ``public`` tokens of the prompt.

        At least one prompt token is always left to prefill (its logits choose the first new token)."""
        self.lookups += 1
        limit = len(prompt) - 1
        found: list[tuple[int, PrefixEntry]] = []
        # the shared walk covers a prefix of the owner's: the prompt's blocks are hashed once for both
        hashes = list(_block_hashes(prompt[:limit]))
        if owner is not None:
            entry = self._deepest(hashes, lambda hashed: self._owned.get((adapter, owner, hashed)))
            if entry is not None:
                found.append((_common_prefix(entry.ids, prompt, limit=limit), entry))
        shared_limit = min(public, limit)
        entry = self._deepest(hashes[: shared_limit // BLOCK], lambda hashed: self._index.get((adapter, hashed)))
        if entry is not None:
            found.append((_common_prefix(entry.ids, prompt, limit=shared_limit), entry))
        if not found:
            return None, 0
        shared, entry = max(found, key=lambda pair: pair[0])
        if shared < BLOCK:
            return None, 0
        entry.used = next(self._tick)
        self.hits += 1
        self.reused_tokens += shared
        return entry, shared

    def _deepest(self, hashes: list[int], holders: Callable[[int], set[int] | None]) -> PrefixEntry | None:
        """The most recently used of the entries found under the most of ``hashes`` (chained block hashes)."""
        best: set[int] = set()
        for hashed in hashes:
            found = holders(hashed)
            if not found:
                break
            best = found
        if not best:
            return None
        return max((self._entries[key] for key in best), key=lambda entry: entry.used)

    def store(
        self,
        adapter: str | None,
        owner: str | None,
        ids: list[int],
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        replaces: PrefixEntry | None = None,
        contributors: frozenset[str] = frozenset(),
    ) -> None:
        """Keep a finished request's tokens; ``replaces`` (the entry it started from) goes if this one extends it
        and is of the same owner (another member's entry stays theirs). ``contributors``: the other members whose
        words ``ids`` hold."""
        same_owner = replaces is not None and replaces.owner == owner and owner is not None
        if replaces is not None and same_owner and replaces.adapter == adapter and _is_prefix(replaces.ids, ids):
            self._drop(replaces)
        if len(ids) < BLOCK or len(ids) > self.token_budget or UNKNOWN_CONTRIBUTOR in contributors:
            return
        while self.tokens + len(ids) > self.token_budget:
            self._drop(min(self._entries.values(), key=lambda entry: entry.used))
        entry = PrefixEntry(adapter, owner, tuple(ids), keys, values, used=next(self._tick), contributors=contributors)
        entry.hashes = list(_block_hashes(ids))
        key = entry.key = next(self._ids)
        self._entries[key] = entry
        for hashed in entry.hashes:
            self._index.setdefault((adapter, hashed), set()).add(key)
            if owner is not None:
                self._owned.setdefault((adapter, owner, hashed), set()).add(key)
        self.tokens += len(ids)

    def drop_owner(self, owner: str) -> int:
        """Drop every entry that holds words of ``owner`` (a forgotten user): theirs, and those of other members'
        prompts they contributed to; how many were dropped."""
        gone = [entry for entry in self._entries.values() if entry.owner == owner or owner in entry.contributors]
        for entry in gone:
            self._drop(entry)
        return len(gone)

    def keep_adapters(self, loaded: set[str]) -> None:
        """Drop the entries of adapters no longer loaded: a later adapter of the same name is another model."""
        for entry in [entry for entry in self._entries.values() if entry.adapter not in loaded | {None}]:
            self._drop(entry)

    def clear(self) -> None:
        for entry in list(self._entries.values()):
            self._drop(entry)

    def _drop(self, entry: PrefixEntry) -> None:
        key = entry.key
        if self._entries.get(key) is not entry:
            return
        del self._entries[key]
        for hashed in entry.hashes:
            _unlist(self._index, (entry.adapter, hashed), key)
            if entry.owner is not None:
                _unlist(self._owned, (entry.adapter, entry.owner, hashed), key)
        self.tokens -= len(entry.ids)


def _unlist(index: dict[Any, set[int]], where: Any, key: int) -> None:
    holders = index.get(where)
    if holders is not None:
        holders.discard(key)
        if not holders:
            del index[where]


def _block_hashes(ids: list[int] | tuple[int, ...]):
    """The chained hash of each whole block of ``ids``."""
    hashed = 0
    for start in range(0, len(ids) - BLOCK + 1, BLOCK):
        hashed = hash((hashed, tuple(ids[start : start + BLOCK])))
        yield hashed


def _common_prefix(a: tuple[int, ...], b: list[int], limit: int) -> int:
    count = 0
    for x, y in zip(a, b[:limit], strict=False):
        if x != y:
            break
        count += 1
    return count


def _is_prefix(short: tuple[int, ...], ids: list[int]) -> bool:
    return len(short) <= len(ids) and tuple(ids[: len(short)]) == short
