"""Export the opted-in training logs and members' ratings into the run directory: JSONL snapshots and a
manifest (ratings: see ratings.py).

The store logs a turn only while its user is opted in, and skips a forgotten user's entries (and every
entry from before a forget). A /forget can land while we read, so each user's tombstone is checked again
after their entries are read, and anything from before it is dropped. Personal data is scrubbed before the
snapshot is written (see scrub.py): no file of a run ever holds the raw text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from brain.store import Store
from brain.store.ids import tombstone_member
from trainer.nightly.files import read_json, read_jsonl, write_json, write_jsonl
from trainer.nightly.link import RedisLink
from trainer.nightly.ratings import read_rated, write_ratings
from trainer.nightly.scrub import scrub

SNAPSHOT = "export/snapshot.jsonl"
MANIFEST = "export/manifest.json"


@dataclass
class Manifest:
    entries: int
    users: dict[str, dict[str, Any]]  # user -> {"entries": n, "consent_versions": [...]}
    user_hashes: list[str]  # tombstone members of every exported user: later forgets find this run's data
    consent_versions: dict[str, int]
    first_at: str | None
    last_at: str | None
    dropped_after_forget: int = 0
    scrubbed: dict[str, int] = field(default_factory=dict)  # replacements by kind (email, phone, card, url)
    exported_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    rated_turns: int = 0
    ratings: int = 0
    liked: int = 0  # rated turns liked on balance
    disliked: int = 0
    ratings_dropped_after_forget: int = 0
    rated_turns_left_out: int = 0  # beyond preference.max_rated_turns (the oldest)


def entry_ms(entry: dict[str, Any]) -> int:
    """The time a stream entry was logged, from its id (milliseconds since the epoch)."""
    return int(entry["id"].split("-")[0])


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()


async def read_logs(store: Store) -> tuple[list[dict[str, Any]], int]:
    """Every exportable log entry, oldest first per user, and how many were dropped by a forget meanwhile."""
    rows: list[dict[str, Any]] = []
    dropped = 0
    for user in sorted(await store.training_log.users()):
        entries = [entry async for entry in store.training_log.entries(user)]
        forgotten = await store.tombstones.forgotten_at(user)
        if forgotten is not None:
            kept = [e for e in entries if entry_ms(e) > forgotten]
            dropped += len(entries) - len(kept)
            entries = kept
        rows += [
            {
                "id": e["id"],
                "user": user,
                "chat_id": e.get("chat_id", ""),
                "user_text": e.get("user_text", ""),
                "reply": e.get("reply", ""),
                "persona": e.get("persona", ""),
                "consent_version": e.get("consent_version", ""),
                "ts": entry_ms(e) / 1000,
            }
            for e in entries
        ]
    return rows, dropped


def export_logs(link: RedisLink, run_dir: Path, max_rated_turns: int = 0) -> Manifest:
    """The logs, and (``max_rated_turns`` > 0) the newest rated turns, scrubbed; the manifest says whose they are."""
    rows, dropped = link.call(read_logs(link.store), timeout=600)
    turns, ratings_dropped, left_out = (
        link.call(read_rated(link.store, max_rated_turns), timeout=600) if max_rated_turns else ([], 0, 0)
    )
    rated = write_ratings(run_dir, turns, ratings_dropped, left_out)
    scrubbed: Counter = Counter(rated.scrubbed)
    for row in rows:
        row["user_text"], row["reply"] = scrub(row["user_text"], scrubbed), scrub(row["reply"], scrubbed)
    users: dict[str, dict[str, Any]] = {}
    for row in rows:
        info = users.setdefault(row["user"], {"entries": 0, "consent_versions": []})
        info["entries"] += 1
        if row["consent_version"] not in info["consent_versions"]:
            info["consent_versions"].append(row["consent_version"])
    stamps = [entry_ms(row) for row in rows]
    manifest = Manifest(
        entries=len(rows),
        users=users,
        user_hashes=sorted(tombstone_member(user) for user in set(users) | rated.members),
        consent_versions=dict(Counter(row["consent_version"] for row in rows)),
        first_at=_iso(min(stamps)) if stamps else None,
        last_at=_iso(max(stamps)) if stamps else None,
        dropped_after_forget=dropped,
        scrubbed=dict(scrubbed),
        rated_turns=rated.turns,
        ratings=rated.ratings,
        liked=rated.liked,
        disliked=rated.disliked,
        ratings_dropped_after_forget=rated.dropped_after_forget,
        rated_turns_left_out=rated.left_out,
    )
    write_jsonl(run_dir / SNAPSHOT, rows)
    write_json(run_dir / MANIFEST, asdict(manifest))
    return manifest


def load_snapshot(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(run_dir / SNAPSHOT)


def load_manifest(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / MANIFEST)
