"""Clean the exported turns and split them, by conversation, into train, validation and test.

Drops empty, garbage and duplicate turns, scrubs personal data (see scrub.py), groups turns into
conversations (a chat of one user, cut where it pauses longer than a set gap or changes persona) and
assigns each conversation to a split by a hash of its id: the same conversation lands in the same split in
every run, so what trained a live adapter never becomes test data later.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.nightly.files import read_json, read_jsonl, write_json, write_jsonl
from trainer.nightly.scrub import scrub

SPLITS = ("train", "val", "test")
DATA_DIR = "data"


@dataclass
class CleanReport:
    entries: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"empty": 0, "garbage": 0, "duplicate": 0})
    scrubbed: dict[str, int] = field(default_factory=lambda: {"email": 0, "phone": 0, "card": 0, "url": 0})
    conversations: dict[str, int] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)


def garbage(text: str, max_chars: int) -> bool:
    """Too long, mostly symbols, one character over and over, or the same few words on repeat."""
    stripped = re.sub(r"\s+", "", text)
    if len(text) > max_chars:
        return True
    if len(stripped) >= 8:
        if sum(ch.isalnum() for ch in stripped) < len(stripped) / 3:
            return True
        if Counter(stripped).most_common(1)[0][1] > len(stripped) / 2:
            return True
    words = text.lower().split()
    return len(words) >= 10 and len(set(words)) < len(words) * 0.3


def normalized(text: str) -> str:
    return " ".join(text.casefold().split())


def clean_turns(rows: list[dict[str, Any]], max_chars: int, report: CleanReport) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    scrubbed: Counter = Counter()
    kept = []
    for row in rows:
        report.entries += 1
        user_text, reply = row["user_text"].strip(), row["reply"].strip()
        if not user_text or not reply:
            report.dropped["empty"] += 1
            continue
        if garbage(user_text, max_chars) or garbage(reply, max_chars):
            report.dropped["garbage"] += 1
            continue
        user_text, reply = scrub(user_text, scrubbed), scrub(reply, scrubbed)
        key = (normalized(user_text), normalized(reply))
        if key in seen:
            report.dropped["duplicate"] += 1
            continue
        seen.add(key)
        kept.append({**row, "user_text": user_text, "reply": reply})
    report.kept = len(kept)
    report.scrubbed.update(scrubbed)
    return kept


def conversations(rows: list[dict[str, Any]], gap_s: float) -> list[dict[str, Any]]:
    """Turns grouped per user and chat, oldest first, cut at long pauses and persona changes."""
    by_chat: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_chat.setdefault((row["user"], row["chat_id"]), []).append(row)
    out = []
    for (user, chat_id), turns in sorted(by_chat.items()):
        turns.sort(key=lambda t: (t["ts"], t["id"]))
        current: list[dict[str, Any]] = []
        for turn in turns:
            paused = bool(current) and turn["ts"] - current[-1]["ts"] > gap_s
            if current and (paused or turn["persona"] != current[-1]["persona"]):
                out.append(_conversation(user, chat_id, current))
                current = []
            current.append(turn)
        if current:
            out.append(_conversation(user, chat_id, current))
    return out


def _conversation(user: str, chat_id: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    digest = hashlib.sha256(f"{user}\0{chat_id}\0{turns[0]['id']}".encode()).hexdigest()[:16]
    return {
        "id": digest,
        "user": user,
        "chat_id": chat_id,
        "persona": turns[0]["persona"],
        "turns": [{"id": t["id"], "user": t["user_text"], "reply": t["reply"]} for t in turns],
    }


def split_of(conversation_id: str, val_fraction: float, test_fraction: float) -> str:
    point = int(hashlib.sha256(conversation_id.encode()).hexdigest()[:8], 16) / 16**8
    if point < test_fraction:
        return "test"
    return "val" if point < test_fraction + val_fraction else "train"


def split(convs: list[dict[str, Any]], val_fraction: float, test_fraction: float) -> dict[str, list[dict]]:
    """Conversations per split. With three or more conversations, validation and test hold at least one
    each, overall and for each user (whose own adapter is measured on their own held-out talk)."""
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for conv in convs:
        parts[split_of(conv["id"], val_fraction, test_fraction)].append(conv)
    _hold_out(parts, lambda conv: True)
    for user in sorted({conv["user"] for conv in convs}):
        _hold_out(parts, lambda conv, user=user: conv["user"] == user)
    return parts


def _hold_out(parts: dict[str, list[dict[str, Any]]], belongs: Any) -> None:
    """Fill each empty split with one conversation from the split holding the most, when that split can
    spare one; the one with the lowest hash moves, so the same data always splits the same way."""
    for name in ("test", "val", "train"):
        mine = {split: [conv for conv in convs if belongs(conv)] for split, convs in parts.items()}
        donor = max(SPLITS, key=lambda split: len(mine[split]))
        if not mine[name] and len(mine[donor]) >= 2:
            nearest = min(mine[donor], key=lambda conv: hashlib.sha256(conv["id"].encode()).hexdigest())
            parts[donor].remove(nearest)
            parts[name].append(nearest)


def clean_export(
    rows: list[dict[str, Any]],
    run_dir: Path,
    *,
    max_chars: int,
    gap_s: float,
    val_fraction: float,
    test_fraction: float,
) -> CleanReport:
    report = CleanReport()
    kept = clean_turns(rows, max_chars, report)
    parts = split(conversations(kept, gap_s), val_fraction, test_fraction)
    for name, convs in parts.items():
        write_jsonl(run_dir / DATA_DIR / f"{name}.jsonl", convs)
        report.conversations[name] = len(convs)
        report.turns[name] = sum(len(c["turns"]) for c in convs)
    write_json(run_dir / DATA_DIR / "clean_report.json", asdict(report))
    return report


def load_split(run_dir: Path, name: str, user: str | None = None) -> list[dict[str, Any]]:
    convs = read_jsonl(run_dir / DATA_DIR / f"{name}.jsonl")
    return [c for c in convs if user is None or c["user"] == user]


def load_report(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / DATA_DIR / "clean_report.json")
