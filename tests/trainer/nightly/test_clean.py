"""Cleaning: personal data scrubbed and counted, junk dropped, a deterministic split by conversation."""

from __future__ import annotations

from collections import Counter

from trainer.nightly.clean import CleanReport, clean_turns, conversations, split, split_of
from trainer.nightly.scrub import scrub


def row(user: str, chat: str, text: str, reply: str = "Sure.", ts: float = 0.0, n: int = 0) -> dict:
    return {"id": f"{int(ts * 1000)}-{n}", "user": user, "chat_id": chat, "user_text": text, "reply": reply,
            "persona": "assistant", "consent_version": "v1", "ts": ts}  # fmt: skip


def test_personal_data_is_replaced_and_counted() -> None:
    counts: Counter = Counter()
    text = (
        "Write to ann.lee+club@mail.example.org or call +44 20 7946 0958 or (555) 123-4567. "
        "My card is 4111 1111 1111 1111. Reset link: https://example.com/reset?token=abc123XYZ, "
        "docs at https://example.com/docs/intro?page=2."
    )
    out = scrub(text, counts)
    assert out == (
        "Write to [email] or call [phone] or [phone]. My card is [card]. Reset link: [url] "
        "docs at https://example.com/docs/intro?page=2."
    )
    assert counts == {"email": 1, "phone": 2, "card": 1, "url": 1}


def test_ordinary_numbers_and_links_stay() -> None:
    counts: Counter = Counter()
    text = "In 2024, 1,000 people paid 12.50 at 10:30; pi is 3.14159265; see https://python.org/downloads/"
    assert scrub(text, counts) == text
    assert not counts


def test_every_run_of_13_to_19_digits_is_scrubbed_whatever_its_checksum() -> None:
    counts: Counter = Counter()
    for number in ("4111-1111-1111-1112", "1234567890123", "1234 5678 9012 3456 789", "4111.1111.1111.1111"):
        assert scrub(f"my number is {number}.", counts) == "my number is [card].", number
    assert counts == {"card": 4}


def test_empty_garbage_and_duplicate_turns_are_dropped_and_counted() -> None:
    rows = [
        row("t:1", "c", "Hello there", "Hi!"),
        row("t:1", "c", "   ", "Hi!"),
        row("t:1", "c", "Hello?", ""),
        row("t:1", "c", "!!!!!!!!!!!!!!!!!!!!", "Hi!"),
        row("t:1", "c", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Hi!"),
        row("t:1", "c", "ok", " ".join(["la"] * 30)),
        row("t:2", "c", "hello   THERE", "hi!"),
        row("t:2", "c", "Mail me at bob@example.com", "Done."),
    ]
    report = CleanReport()
    kept = clean_turns(rows, max_chars=2000, report=report)
    assert [r["user_text"] for r in kept] == ["Hello there", "Mail me at [email]"]
    assert report.dropped == {"empty": 2, "garbage": 3, "duplicate": 1}
    assert report.scrubbed["email"] == 1


def test_split_keeps_conversations_whole_and_is_stable_as_data_grows() -> None:
    rows = [row(f"t:{u}", f"c{c}", f"question {u} {c} {i}", ts=c * 10_000 + i, n=i)
            for u in range(5) for c in range(8) for i in range(3)]  # fmt: skip
    convs = conversations(rows, gap_s=1800)
    assert len(convs) == 40 and all(len(c["turns"]) == 3 for c in convs)

    first = split(convs, val_fraction=0.2, test_fraction=0.2)
    for user in {c["user"] for c in convs}:
        assert all(any(c["user"] == user for c in part) for part in first.values()), "each user in each split"
    where = {c["id"]: name for name, part in first.items() for c in part}
    more = convs + conversations([row("t:9", "new", f"later {i}", ts=9e6 + i, n=i) for i in range(30)], 1800)
    again = split(more, val_fraction=0.2, test_fraction=0.2)
    assert {c["id"]: name for name, part in again.items() for c in part if c["id"] in where} == where


def test_a_long_pause_starts_a_new_conversation() -> None:
    rows = [row("t:1", "c", "morning", ts=0), row("t:1", "c", "still morning", ts=60, n=1),
            row("t:1", "c", "evening", ts=9 * 3600, n=2)]  # fmt: skip
    assert [len(c["turns"]) for c in conversations(rows, gap_s=1800)] == [2, 1]


def test_three_conversations_always_give_each_split_one() -> None:
    # hashes decide the first placement; across many sets every placement occurs, two in one split included
    placements = set()
    for n in range(300):
        convs = conversations([row(f"t:{u}", "c", f"hello {u}", ts=n, n=n * 10 + u) for u in range(3)], 1800)
        parts = split(convs, val_fraction=0.3, test_fraction=0.3)
        assert sorted(len(p) for p in parts.values()) == [1, 1, 1], parts
        placements.add(tuple(sorted(split_of(c["id"], 0.3, 0.3) for c in convs)))
    assert ("test", "val", "val") in placements and ("test", "test", "test") in placements
