"""No file of a run holds personal data as it was typed: e-mail addresses, phone numbers and long digit runs
(card numbers, whatever their checksum) are scrubbed before anything is written, the export included (logs and
rated turns alike)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from brain.store import Store
from brain.store.client import connect
from tests.trainer.nightly.helpers import files_under, log_turns, nightly_settings
from tests.trainer.nightly.ratings_helpers import rated_turn, store_rated
from trainer.nightly.export import load_manifest, load_snapshot
from trainer.nightly.ratings import load_exported
from trainer.nightly.run import run_nightly
from trainer.nightly.runs import run_dirs

CANARIES = {
    "email": "canary.person@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "card, failing its checksum": "4111-1111-1111-1112",
    "19 digits": "1234567890123456789",
    "13 digits": "9876543210987",
}


def forms(canary: str) -> set[bytes]:
    """The canary as typed and as bare digits (a file might hold it without separators)."""
    digits = re.sub(r"\D", "", canary)
    return {canary.encode()} | ({digits.encode()} if len(digits) >= 10 else set())


async def seed(redis_url: str) -> None:
    store = Store(connect(redis_url))
    try:
        for n, (kind, canary) in enumerate(CANARIES.items()):
            user = f"telegram:{n + 1}"
            await store.profiles.opt_in(user, "v1")
            turns = [(f"my {kind} is {canary}, keep it safe", "Noted, I will."),
                     (f"question {n} about the weather", f"It is sunny; ask {canary} for more."),
                     (f"another question {n} about tea", "Green tea is nice.")]  # fmt: skip
            await log_turns(store, user, turns, chat=f"c{n}")
        # a rated reply and its retry, the prompt and a reply each naming a canary
        first = rated_turn(
            f"write to {CANARIES['email']}", f"Call {CANARIES['phone']} instead.", [1], author="telegram:90"
        )
        retry = rated_turn(
            f"write to {CANARIES['email']}", "No.", [-1], author="telegram:90", retry_of=first.turn.turn_id
        )
        await store_rated(store, [first, retry])
    finally:
        await store.close()


def test_no_file_of_a_run_holds_an_address_a_phone_or_a_long_digit_run(
    redis_server, tmp_path: Path, tiny_model_dir: Path
) -> None:
    asyncio.run(seed(redis_server.url))
    settings = nightly_settings(
        redis_server.url, tiny_model_dir, tmp_path, min_community_turns=3, finetune={"max_steps": 3}
    )
    report = run_nightly(settings, quiet=True)
    assert report.status == "finished" and report.targets[0].finetune, "the run trained on the export"

    run = run_dirs(settings.trainer.runs_dir)[-1]
    snapshot = " ".join(row["user_text"] + " " + row["reply"] for row in load_snapshot(run))
    assert len(load_snapshot(run)) == 3 * len(CANARIES), "the export was kept, scrubbed"
    assert "[email]" in snapshot and "[phone]" in snapshot and "[card]" in snapshot
    rated = load_exported(run)
    assert [(t.turn.prompt[-1]["content"], t.turn.reply, t.score) for t in rated] == [
        ("write to [email]", "Call [phone] instead.", 1),
        ("write to [email]", "No.", -1),
    ]
    assert load_manifest(run)["scrubbed"] == {"email": 4, "phone": 3, "card": 8}

    files = files_under(Path(settings.trainer.runs_dir), Path(settings.trainer.registry_dir))
    assert any(path.name == "state.pt" for path in files), "checkpoints are searched too"
    leaked = {
        (kind, str(path.relative_to(tmp_path)))
        for path in files
        for kind, canary in CANARIES.items()
        if any(form in path.read_bytes() for form in forms(canary))
    }
    assert not leaked, f"personal data on disk: {sorted(leaked)}"
