"""Only what users consented to reaches a run: users chat through the real brain API, one opts out midway,
one is forgotten, one never opts in. Canary strings show that nothing else lands in any file of the run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.client import BrainClient
from brain.api_models import ChatRequest, UserRef
from tests.support.brain_server import running_brain
from tests.trainer.nightly.helpers import files_under, nightly_settings
from trainer.nightly.export import load_manifest, load_snapshot
from trainer.nightly.run import run_nightly
from trainer.nightly.runs import run_dirs


async def say(client: BrainClient, who: UserRef, *texts: str) -> None:
    for text in texts:
        request = ChatRequest(**who.model_dump(), chat_id=f"chat-{who.user_id}", text=text, sampling={"temperature": 0})
        await client.chat(request)


async def test_the_export_holds_exactly_the_opted_in_turns_and_no_canary_reaches_the_run(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    ann, bob, cid, dan, eve = (UserRef(platform="telegram", user_id=str(n)) for n in range(1, 6))
    with running_brain(tmp_path, tiny_model_dir) as brain:
        async with BrainClient(brain.url, brain.api_key) as client:
            await say(client, ann, "CANARY-ANN-BEFORE-CONSENT")
            await client.opt_in(ann)
            await say(client, ann, "ann likes tea", "ann plays chess", "ann reads books")

            await client.opt_in(bob)
            await say(client, bob, "bob rides a bike", "bob bakes bread")
            await client.opt_out(bob)  # keeps what was logged, logs nothing more
            await say(client, bob, "CANARY-BOB-AFTER-OPTOUT", "CANARY-BOB-STILL-OUT")

            await say(client, cid, "CANARY-CID-NEVER-OPTED-IN")

            await client.opt_in(dan)
            await say(client, dan, "CANARY-DAN-FORGOTTEN-1", "CANARY-DAN-FORGOTTEN-2")
            await client.forget(dan)

            await client.opt_in(eve)
            await say(client, eve, "CANARY-EVE-BEFORE-FORGET")
            await client.forget(eve)
            await client.opt_in(eve)  # back after a forget: only what follows counts
            await say(client, eve, "eve came back", "eve sings")

        settings = nightly_settings(
            brain.redis.url, tiny_model_dir, tmp_path, min_community_turns=3, finetune={"max_steps": 3}
        )
        report = await asyncio.to_thread(run_nightly, settings, quiet=True)

    run = run_dirs(settings.trainer.runs_dir)[-1]
    exported = {(row["user"], row["user_text"]) for row in load_snapshot(run)}
    assert exported == {
        ("telegram:1", "ann likes tea"), ("telegram:1", "ann plays chess"), ("telegram:1", "ann reads books"),
        ("telegram:2", "bob rides a bike"), ("telegram:2", "bob bakes bread"),
        ("telegram:5", "eve came back"), ("telegram:5", "eve sings"),
    }  # fmt: skip
    manifest = load_manifest(run)
    assert manifest["entries"] == 7
    assert sorted(manifest["users"]) == ["telegram:1", "telegram:2", "telegram:5"]
    assert manifest["consent_versions"] == {brain.settings.brain.consent_version: 7}
    assert manifest["first_at"] <= manifest["last_at"]
    assert report.status == "finished" and report.targets[0].finetune, "the run trained on the export"

    files = files_under(run, Path(settings.trainer.registry_dir))
    assert any(path.name == "state.pt" for path in files), "checkpoints are searched too"
    leaked = [path for path in files if b"CANARY" in path.read_bytes()]
    assert not leaked, f"opted-out or forgotten text in {leaked}"
