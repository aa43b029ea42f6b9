"""Logs at INFO name no member: the brain's log (a registry event of a member's adapter, a chat and a forget),
uvicorn's access log (member ids are in /v1/users/... paths) and the trainer's printed report table use an alias
per run; DEBUG adds the real names."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from bot.client import BrainClient
from brain import log_privacy
from brain.adapters import user_target
from brain.api_models import ChatRequest, UserRef
from brain.registry_records import ReloadEvent
from brain.store import Store
from brain.store.client import connect
from tests.support.eventually import eventually
from trainer.nightly.report import Outcome, RunReport, print_report

ANN = UserRef(platform="telegram", user_id="4242")


async def test_the_brains_info_log_names_no_member_after_a_chat_a_reload_and_a_forget(brain, caplog) -> None:
    caplog.set_level(logging.INFO)
    target = user_target(ANN.key)
    async with BrainClient(brain.url, brain.api_key, retries=0) as client:
        await client.opt_in(ANN)
        await client.chat(ChatRequest(platform=ANN.platform, user_id=ANN.user_id, chat_id="1", text="hello"))
        store = Store(connect(brain.redis.url))
        try:
            await store.registry.publish_reload(ReloadEvent(target=target, version=1, action="promote"))
        finally:
            await store.close()
        await eventually(lambda: "registry event" in caplog.text, "the brain logged the registry event")
        await client.forget(ANN)
    logging.getLogger("uvicorn.access").info(  # as uvicorn logs a request, had the test server access logs on
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", f"/v1/users/telegram/{ANN.user_id}/forget", "1.1", 200
    )
    text = caplog.text
    assert "registry event" in text and "member-" in text, "the event is logged, its member by an alias"
    for name in (target, target[len("user-") :], ANN.key, ANN.user_id):
        assert name not in text, name


def test_debug_adds_the_real_names(caplog) -> None:
    log_privacy.install()
    caplog.set_level(logging.DEBUG, logger="brain.log_privacy")
    target = "user-" + "ab" * 8
    logging.getLogger("brain.adapters").debug("loading %s", target)
    logging.getLogger("brain.adapters").warning("cannot load adapter %s@3", target)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(target in message and "stands for" in message for message in debug)
    assert warning and target not in warning[0] and "@3" in warning[0]


def test_the_trainers_report_table_names_members_by_an_alias_of_the_run() -> None:
    ann, bob = user_target("telegram:1"), user_target("telegram:2")
    report = RunReport(
        run="r1",
        started_at="2026-12-06T00:00:00+00:00",
        status="finished",
        targets=[
            Outcome(target="community", status="promoted", reasons=[]),
            Outcome(target=ann, status="kept", reasons=[f"{ann}@2 did not beat the live adapter"]),
            Outcome(target=bob, status="skipped", reasons=["too few turns"]),
        ],
    )
    out = io.StringIO()
    print_report(report, Console(file=out, width=200))
    printed = out.getvalue()
    assert "community" in printed and "member-1" in printed and "member-2" in printed
    assert ann not in printed and bob not in printed and ann[5:] not in printed
