"""Flood-wait benchmark: while Telegram holds one busy group for 30 s, how fast are other chats answered?

The real Telegram adapter (python-telegram-bot) runs against the tests' local Bot API and the fake brain
(tests/support). A member asks in a busy group; Telegram refuses the bot's first edit there with a 429 and
``retry_after`` (``--wait``, 30 s by default), so the group is held. During that wait ``--chats`` members
write to the bot in their direct chats, one every ``--every`` seconds. For each direct chat the script
records the first-reply time (from the member's message to the bot's first message there) and the
whole-reply time; for the group, when its next call came, measured from the 429.

The bars (the script exits 1 when one is missed): every direct chat has its whole reply before the group's
wait is over, and nothing goes to the group (not even "typing…") until its wait is over.

    python bench/flood_wait.py              # a 30 s group wait, 10 direct chats
    python bench/flood_wait.py --wait 5     # a quick look

Prints a table and writes bench/results/flood_wait.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.client import BrainClient  # noqa: E402
from bot.telegram.app import build_application, running  # noqa: E402
from tests.bot.telegram.settings_for_tests import bot_settings  # noqa: E402
from tests.support.eventually import eventually  # noqa: E402
from tests.support.fake_brain import API_KEY, FakeBrain  # noqa: E402
from tests.support.telegram_api import TelegramApiServer  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "flood_wait.json"


async def measure(wait_s: float, chats: int, every_s: float) -> dict:
    async with TelegramApiServer() as telegram, FakeBrain() as brain:
        brain.reply_for = lambda request: answer_to(request.text)
        # Telegram's own pacing of one call a second per chat, as deployed
        settings = bot_settings(telegram, brain.url, edit_interval_s=1.0)
        async with BrainClient(brain.url, API_KEY) as client:
            application = build_application(settings, client)
            async with running(application, settings):
                owner = telegram.user("Owner", "owner")
                group = telegram.group("Busy group", owner=owner)

                async def stream_as_the_group_reads(request, index: int, text: str) -> None:
                    if text and request.chat_id == str(group.id):  # each word once the one before is shown
                        await eventually(
                            lambda: text in telegram.transcript(group), "the group's reply so far", timeout=wait_s + 60
                        )

                brain.before_delta = stream_as_the_group_reads
                telegram.fail_next("editMessageText", retry_after=wait_s, when=lambda p: p["chat_id"] == group.id)
                telegram.send_text(owner, group, "@ownchat_test_bot tell the group something long")
                [refused] = await eventually(lambda: telegram.calls_to("editMessageText", ok=False), "the 429")

                members = [telegram.user(f"Member {i}") for i in range(chats)]
                sent: dict[int, float] = {}
                for member in members:
                    chat = telegram.private_chat(member)
                    telegram.send_text(member, chat, f"question {member.id}")
                    sent[chat.id] = time.monotonic()
                    await asyncio.sleep(every_s)
                for member in members:
                    await telegram.wait_for_text(telegram.chats[member.id], answer_to(f"question {member.id}"))
                await eventually(
                    lambda: telegram.calls_to("editMessageText", ok=True) and _group_done(telegram, group.id),
                    "the group's whole reply",
                    timeout=wait_s + 60,
                )

    rows = []
    for chat_id, at in sent.items():
        calls = [c for c in telegram.calls if c.params.get("chat_id") == chat_id and c.ok]
        messages = [c.at for c in calls if c.method == "sendMessage"]
        whole = max(c.at for c in calls if c.method in ("sendMessage", "editMessageText"))
        rows.append({"sent_after_429_s": at - refused.at, "first_reply_s": messages[0] - at, "whole_s": whole - at})
    group_calls = [c for c in telegram.calls if c.params.get("chat_id") == group.id and c.at > refused.at]
    return {
        "wait_s": wait_s,
        "chats": rows,
        "group_next_call_after_429_s": group_calls[0].at - refused.at,
        "every_chat_whole_within_the_wait": all(r["sent_after_429_s"] + r["whole_s"] < wait_s for r in rows),
    }


def answer_to(text: str) -> str:
    return f"Answer to {text}: " + " ".join(f"word{i}" for i in range(30))


def _group_done(telegram: TelegramApiServer, group_id: int) -> bool:
    texts = telegram.transcript(telegram.chats[group_id])
    return bool(texts) and texts[-1].endswith("word29")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=30.0, help="the group's flood wait, in seconds")
    parser.add_argument("--chats", type=int, default=10, help="direct chats that write during the wait")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between two of them")
    args = parser.parse_args()
    result = asyncio.run(measure(args.wait, args.chats, args.every))
    first = [r["first_reply_s"] for r in result["chats"]]
    whole = [r["whole_s"] for r in result["chats"]]
    print(f"group held {args.wait:g} s; {len(first)} direct chats written to during the wait")
    print(f"  first reply: median {statistics.median(first):.3f} s, max {max(first):.3f} s")
    print(f"  whole reply: median {statistics.median(whole):.3f} s, max {max(whole):.3f} s")
    print(f"  the group's next call came {result['group_next_call_after_429_s']:.3f} s after its 429")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    held = result["group_next_call_after_429_s"] >= args.wait
    return 0 if result["every_chat_whole_within_the_wait"] and held else 1


if __name__ == "__main__":
    raise SystemExit(main())
