"""Recall benchmark: do the facts a member told the bot come back, within and past the memory window?

Scripted members each state three facts about themselves in one message ("Hi! My name is Alice. I live in
Lisbon. My dog is called Biscuit."), then chat about other things; after 0, 4, 12 and 30 exchanges (past the
default one-exchange window from 4 on; 30 is also past a 24-turn one) they ask for each fact back ("What is my
dog called?"). A fact counts as recalled when the reply names it. Every message goes through the brain's own
HTTP API (/v1/chat, /v1/users/.../facts), in this process, with the default model and greedy replies, over a
real redis-server.

The questions must not change what comes after them: before each, the member's keys are saved (DUMP); once its
reply is in, the background work it started (a summary, an extraction) is cancelled and the keys are put back
(RESTORE). So one conversation per member serves every gap, and each question sees exactly the conversation
before it.

Configurations (the memory mechanisms on or off):
- none:      no memory features (the window and the rolling summary only);
- pinned:    the member also pins each fact (/remember), stated in the system prompt;
- extracted: facts extracted from the member's messages in the background (memory.extract_facts);
- retrieved: the member's earlier messages that match a new one come back into the prompt (memory.recall_tokens);
- default:   the shipped settings, with the member pinning (pinned and retrieved);
- all:       pinned, extracted and retrieved.

Run from the repository root (takes a while on a CPU: a few minutes per configuration):

    python -m bench.recall                                  # every configuration, 10 members
    python -m bench.recall --configs none,retrieved --members 4   # a quick look

Prints a table and writes bench/results/recall.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# OpenMP threads that spin while waiting collapse when other processes share the cores; set before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bot.client import BrainClient  # noqa: E402
from brain.api_models import ChatReply, ChatRequest, FactPin  # noqa: E402
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS  # noqa: E402
from brain.memory.settings import MemorySettings  # noqa: E402
from brain.redis_local import LocalRedis  # noqa: E402
from brain.service.app import create_app  # noqa: E402
from brain.service.runtime import Runtime  # noqa: E402
from brain.settings import Secrets, Settings  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "recall.json"
GAPS = (0, 4, 12, 30)
PLATFORM = "bench"
API_KEY = "bench-key"
# (statement, question, the word a reply must hold): three facts per member, told in one message
MEMBERS: list[list[tuple[str, str, str]]] = [
    [("My name is Alice.", "What is my name?", "alice"),
     ("I live in Lisbon.", "Which city do I live in?", "lisbon"),
     ("My dog is called Biscuit.", "What is my dog called?", "biscuit")],
    [("My name is Marco.", "What is my name?", "marco"),
     ("I work as a baker.", "What is my job?", "baker"),
     ("My favourite colour is teal.", "What is my favourite colour?", "teal")],
    [("My name is Priya.", "What is my name?", "priya"),
     ("I live in Toronto.", "Which city do I live in?", "toronto"),
     ("I am learning to play the cello.", "Which instrument am I learning to play?", "cello")],
    [("My name is Tomasz.", "What is my name?", "tomasz"),
     ("My cat is called Pickle.", "What is my cat called?", "pickle"),
     ("I am building a birdhouse.", "What am I building?", "birdhouse")],
    [("My name is Keiko.", "What is my name?", "keiko"),
     ("I live in Osaka.", "Which city do I live in?", "osaka"),
     ("My favourite food is ramen.", "What is my favourite food?", "ramen")],
    [("My name is Dmitri.", "What is my name?", "dmitri"),
     ("I work as a nurse.", "What is my job?", "nurse"),
     ("My sister is called Olga.", "What is my sister called?", "olga")],
    [("My name is Fatima.", "What is my name?", "fatima"),
     ("I live in Marseille.", "Which city do I live in?", "marseille"),
     ("My favourite sport is badminton.", "What is my favourite sport?", "badminton")],
    [("My name is Oliver.", "What is my name?", "oliver"),
     ("My parrot is called Mango.", "What is my parrot called?", "mango"),
     ("I am writing a novel about pirates.", "What is my novel about?", "pirate")],
    [("My name is Lucia.", "What is my name?", "lucia"),
     ("I work as a dentist.", "What is my job?", "dentist"),
     ("My favourite flower is the tulip.", "What is my favourite flower?", "tulip")],
    [("My name is Henrik.", "What is my name?", "henrik"),
     ("I live in Bergen.", "Which city do I live in?", "bergen"),
     ("I am training for a marathon.", "What am I training for?", "marathon")],
]  # fmt: skip
# the other things members chat about; a few share words with the questions, as real chats do
FILLER = [
    "Can you explain how rainbows form?",
    "What is a good book for a long train ride?",
    "How do I make pancakes?",
    "Why do leaves change colour in autumn?",
    "Can you suggest a name for a goldfish?",
    "What is the tallest mountain in Europe?",
    "How can I sleep better at night?",
    "Tell me a fun fact about octopuses.",
    "What is the best city to visit in Italy?",
    "How does a bicycle stay upright?",
    "Give me a tip for learning a new language.",
    "What should I cook for dinner tonight?",
    "How do I teach a dog to sit?",
    "Why is the sky blue?",
    "What is photosynthesis?",
    "Can you write a haiku about the sea?",
    "How many planets are in the solar system?",
    "What is a healthy breakfast?",
    "How do I stay focused while studying?",
    "What music is good for relaxing?",
    "Explain what a volcano is.",
    "What games can I play on a rainy day?",
    "How do airplanes fly?",
    "What is the difference between a frog and a toad?",
    "Can you recommend a film for the weekend?",
    "How do I keep houseplants alive?",
    "What is the history of chess?",
    "Why do cats purr?",
    "How do I write a good thank-you note?",
    "What are some easy exercises to do at home?",
]
GREEDY = {"temperature": 0.0, "max_new_tokens": 48}


@dataclass
class Config:
    name: str
    pin: bool
    memory: dict[str, Any]


def configs() -> dict[str, Config]:
    defaults = MemorySettings()
    off = {"extract_facts": False, "recall_tokens": 0}
    on = {"extract_facts": True, "recall_tokens": defaults.recall_tokens}
    return {
        "none": Config("none", False, off),
        "pinned": Config("pinned", True, off),
        "extracted": Config("extracted", False, {**off, "extract_facts": True}),
        "retrieved": Config("retrieved", False, {**off, "recall_tokens": defaults.recall_tokens}),
        "default": Config("default", True, {}),
        "all": Config("all", True, on),
    }


@dataclass
class Member:
    index: int
    facts: list[tuple[str, str, str]]
    answers: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return f"m{self.index}"

    @property
    def user(self) -> str:
        return f"{PLATFORM}:{self.user_id}"

    def request(self, text: str) -> ChatRequest:
        return ChatRequest(
            platform=PLATFORM, user_id=self.user_id, chat_id=f"dm{self.index}", text=text, sampling=GREEDY
        )


class Bench:
    """One brain (the default model, loaded once) served in this process, and its Redis."""

    def __init__(self, runtime: Runtime, settings: Settings, window: dict[str, Any]):
        self.runtime = runtime
        self.settings = settings
        self.window = window  # a memory window other than the setting's, e.g. {"max_turns": 8}
        self.app = create_app(settings, runtime)
        self.app.state.runtime = runtime  # the ASGI transport runs no lifespan, which would set it
        self.raw = aioredis.from_url(settings.redis.url, decode_responses=False)  # DUMP payloads are bytes
        transport = httpx.ASGITransport(app=self.app)
        self.client = BrainClient("http://brain", API_KEY, retries=0, timeout=600, transport=transport)
        self.http = httpx.AsyncClient(
            transport=transport, base_url="http://brain", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=600
        )

    async def settle(self) -> None:
        """Wait until the brain's background work (summaries, extraction) is done."""
        while self.runtime.memory.background:
            await asyncio.gather(*list(self.runtime.memory.background), return_exceptions=True)

    async def cancel_background(self) -> None:
        """Cancel the background work that questions started (every member's: all of it is undone anyway)."""
        tasks = list(self.runtime.memory.background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self, config: Config, members: list[Member]) -> None:
        self.runtime.settings.memory = MemorySettings(**(self.window | config.memory))
        await self.runtime.store.r.flushdb()
        await asyncio.gather(*(self.introduce(config, m) for m in members))
        await self.settle()
        done = 0
        for gap in GAPS:
            for turn in range(done, gap):
                await asyncio.gather(*(self.client.chat(m.request(FILLER[turn % len(FILLER)])) for m in members))
            done = gap
            await self.settle()
            await asyncio.gather(*(self.probe(m, gap) for m in members))
            recalled = [a["recalled"] for m in members for a in m.answers[gap]]
            print(f"  {config.name}, gap {gap}: {sum(recalled)}/{len(recalled)} recalled", flush=True)

    async def introduce(self, config: Config, member: Member) -> None:
        await self.client.chat(member.request("Hi! " + " ".join(statement for statement, _, _ in member.facts)))
        if config.pin:
            for statement, _, _ in member.facts:
                pin = FactPin(platform=PLATFORM, user_id=member.user_id, chat_id=f"dm{member.index}", text=statement)
                path = f"/v1/users/{PLATFORM}/{member.user_id}/facts"
                (await self.http.post(path, json=pin.model_dump(mode="json"))).raise_for_status()

    async def probe(self, member: Member, gap: int) -> None:
        """Ask for each fact back, each question seeing the same conversation (its effects are undone)."""
        answers = []
        for _, question, expected in member.facts:
            saved = await self.save(member.user)
            reply: ChatReply = await self.client.chat(member.request(question))
            await self.cancel_background()
            await self.restore(member.user, saved)
            answers.append({"question": question, "reply": reply.reply, "recalled": expected in reply.reply.lower()})
        member.answers[gap] = answers

    async def save(self, user: str) -> dict[str, tuple[bytes, int]]:
        r = self.raw
        saved = {}
        for key in await self.runtime.store.forgetting.user_keys(user):
            dumped = await r.dump(key)
            if dumped is not None:
                saved[key] = (dumped, max(int(await r.pttl(key)), 0))
        return saved

    async def restore(self, user: str, saved: dict[str, tuple[bytes, int]]) -> None:
        r = self.raw
        keys = set(await self.runtime.store.forgetting.user_keys(user)) | set(saved)
        await r.delete(*keys)
        for key, (dumped, ttl) in saved.items():
            await r.restore(key, ttl, dumped, replace=True)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.http.aclose()
        await self.raw.aclose()


def table(results: dict[str, dict[int, float]], counts: dict[str, int]) -> Table:
    out = Table(title="Facts recalled, by exchanges since they were told")
    out.add_column("configuration")
    for gap in GAPS:
        out.add_column(f"gap {gap}", justify="right")
    out.add_column("questions per gap", justify="right")
    for name, rates in results.items():
        out.add_row(name, *(f"{rates[gap]:.0%}" for gap in GAPS), str(counts[name]))
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    chosen = [configs()[name] for name in args.configs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        redis = LocalRedis(Path(tmp) / "redis").start()
        try:
            settings = Settings(
                redis={"url": redis.url},
                model={"name": args.model, "max_new_tokens": 64, "cpu_weights": args.cpu_weights},
                limits={"rate_per_minute": 1_000_000},
            )
            settings.secrets = Secrets(api_key=API_KEY)
            if args.dry_multiplier is not None:
                settings.model.dry.multiplier = args.dry_multiplier
            runtime = Runtime.create(settings)
            bench = Bench(runtime, settings, {} if args.max_turns is None else {"max_turns": args.max_turns})
            runtime.start()
            results: dict[str, dict[int, float]] = {}
            counts: dict[str, int] = {}
            details: dict[str, Any] = {}
            timings: dict[str, float] = {}
            try:
                for config in chosen:
                    members = [Member(i, MEMBERS[i % len(MEMBERS)]) for i in range(args.members)]
                    started = time.perf_counter()
                    await bench.run(config, members)
                    timings[config.name] = round(time.perf_counter() - started, 1)
                    results[config.name] = {
                        gap: sum(a["recalled"] for m in members for a in m.answers[gap])
                        / sum(len(m.answers[gap]) for m in members)
                        for gap in GAPS
                    }
                    counts[config.name] = sum(len(m.answers[GAPS[0]]) for m in members)
                    details[config.name] = {str(gap): [a for m in members for a in m.answers[gap]] for gap in GAPS}
                    Console().print(f"{config.name}: {results[config.name]} in {timings[config.name]} s")
                    # written after every configuration: a long run stopped early keeps what it measured
                    write(args.out, report(args, settings, results, counts, timings, details))
            finally:
                await bench.aclose()
                await runtime.stop()
        finally:
            redis.stop()
    Console().print(table(results, counts))
    return report(args, settings, results, counts, timings, details)


def report(
    args: argparse.Namespace,
    settings: Settings,
    results: dict[str, dict[int, float]],
    counts: dict[str, int],
    timings: dict[str, float],
    details: dict[str, Any],
) -> dict[str, Any]:
    return {
        "model": args.model,
        "cpu_weights": args.cpu_weights,
        "gaps": list(GAPS),
        "members": args.members,
        "window_turns": args.max_turns or settings.memory.max_turns,
        "dry": settings.model.dry.model_dump(),
        "defaults": MemorySettings().model_dump(),
        "recall": {name: {str(gap): round(rate, 3) for gap, rate in rates.items()} for name, rates in results.items()},
        "questions_per_gap": counts,
        "seconds": timings,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "answers": details,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(configs()))
    parser.add_argument("--members", type=int, default=len(MEMBERS))
    parser.add_argument("--model", default=DEFAULT_MODEL_ALIAS)
    # float32: the model as trained, on any CPU ("auto" computes in bfloat16 where the CPU has bfloat16 instructions,
    # which would tie the figures to the machine)
    parser.add_argument("--cpu-weights", default="float32", choices=["auto", "float32", "bfloat16", "int4"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--max-turns", type=int, default=None, help="memory window in turns (default: the setting's)")
    parser.add_argument("--gaps", default=",".join(map(str, GAPS)), help="exchanges between a fact and its question")
    parser.add_argument("--dry-multiplier", type=float, default=None, help="DRY (default: the model profile's)")
    args = parser.parse_args()
    globals()["GAPS"] = tuple(int(gap) for gap in args.gaps.split(","))
    write(args.out, asyncio.run(main_async(args)))


def write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
