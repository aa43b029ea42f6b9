"""Feedback benchmark: do members like the bot more, night after night, when it learns from their reactions?

A simulated community: scripted members, all opted in, ask questions from a pool through the brain's own HTTP
API (/v1/chat, in this process, the default model on CPU, the persona's own sampling) and rate every reply
through POST /v1/feedback by a hidden taste; a member who dislikes a reply sometimes asks again with /retry
(a pair for DPO) and rates the new reply too. Then the real `trainer nightly` runs (a subprocess, against the
same Redis and registry): it learns from the ratings, gates the candidate on held-out ratings and the general
guard (public-domain prose and questions the base model answers right), and starts it as a canary or decides
the running one. The brain follows the registry's reload events; the next day shows what members think.

Day 0 is the base model's; day k comes after the k-th night. Each question is asked in a chat of its own (a
one-off question), and memory recall is off, so every member who asks the same question gives the model the
same prompt: replies to one prompt form a group, and the gate holds out the same prompts every night. Members'
own adapters are not trained (the community's is what the canary and the like-rate are about).

The taste is pluggable: ``--rater NAME`` runs one of the tastes of bench/tastes.py (short: length; direct:
form; plain: content; sparse: one the base model meets in at most 5 % of replies), ``--rater all`` runs each
in turn (``make bench-feedback``), and ``--rater module:function`` any function of (prompt, reply) that
returns +1, -1 or None (no rating). ``--compare-share S`` has the brain ask members which of two replies they
prefer for that share of first replies (on for the sparse taste; bench/tastes.py says how a member chooses).

Replies copy the conversation they sit in, so a rising like-rate alone does not prove the training did it.
After each night the bench also asks a fixed set of prompts (--probe-prompts) in fresh chats twice, once
served by the base model and once by the live adapter, as two members who never rate (not opted in, nothing
kept), and rates both by the same taste: the difference of the two like-rates on the same prompts, with its
95 % interval and McNemar's exact p-value, is the training effect.

    python -m bench.feedback --rater all              # every taste, 5 nights (43 to 65 min each: 2 cores, AVX512-BF16)
    python -m bench.feedback --rater sparse --nights 0   # the base model's like-rate under one taste
    python -m bench.feedback --rater mytaste:rate     # your own taste

Prints a table per night, writes bench/results/feedback.json (every taste run) and feedback.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# OpenMP threads that spin while waiting collapse when other processes share the cores; set before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.tastes import NEARNESS, SHORT_WORDS, TASTES, Nearness, Rater, prefer  # noqa: E402
from bot.client import BrainClient  # noqa: E402
from bot.comparison import second_reply  # noqa: E402
from brain.adapters import COMMUNITY, AdapterManager, adapter_name, canary_position  # noqa: E402
from brain.api_feedback import ComparisonRequest, FeedbackRequest  # noqa: E402
from brain.api_models import ChatReply, ChatRequest, UserRef  # noqa: E402
from brain.consent import CONSENT_FIELD, OPTED_IN
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS  # noqa: E402
from brain.redis_local import LocalRedis  # noqa: E402
from brain.service.app import create_app  # noqa: E402
from brain.service.runtime import Runtime  # noqa: E402
from brain.settings import Secrets, Settings  # noqa: E402
from brain.store.ratings import BASE  # noqa: E402
from trainer.nightly.report import RunReport, read_report  # noqa: E402
from trainer.nightly.stats import wilson  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "feedback.json"
PLATFORM = "bench"
API_KEY = "bench-key"
BAR_POINTS = 15.0
BASE_PROBE, LIVE_PROBE = "probe-base", "probe-live"  # never opted in: nothing they get is kept or learned
# the id the live probe is routed as: the first of its kind inside any canary's share (position below 1 %)
CANARY_PROBE = next(f"{PLATFORM}:probe-{n}" for n in range(10_000) if canary_position(f"{PLATFORM}:probe-{n}") < 0.01)
# what members ask: half of it explanations, which the base model gives at length (70 to 140 words), half quick
# requests, which it answers in a line about as often as not. No quick facts: a small model gets many of them
# wrong, and a taste for short replies would teach it its wrong facts (the guard's questions would catch that)
EXPLANATIONS = [
    "How do I make pancakes?",
    "Why is the sky blue?",
    "How do airplanes fly?",
    "What is photosynthesis?",
    "How can I sleep better at night?",
    "Give me a tip for learning a new language.",
    "How do I keep houseplants alive?",
    "Why do cats purr?",
    "What is a healthy breakfast?",
    "How do I stay focused while studying?",
    "Explain what a volcano is.",
    "How does a bicycle stay upright?",
    "How do I teach a dog to sit?",
    "Why do leaves change colour in autumn?",
    "How do rainbows form?",
    "How do I write a good thank-you note?",
    "What should I cook for dinner tonight?",
    "How does the internet work?",
    "What is a black hole?",
    "How do vaccines work?",
    "Why do we dream?",
    "How can I save money each month?",
    "How do I start running?",
    "What is machine learning?",
    "How do I brew a good cup of coffee?",
    "What makes a good password?",
    "How can I be more productive at work?",
    "How do I plant tomatoes?",
    "How can I make new friends in a new city?",
    "How do I bake bread at home?",
]
QUICK_REQUESTS = [
    "Suggest a name for my new kitten.",
    "Give me a word that rhymes with moon.",
    "Tell me a one-line joke.",
    "Say good morning to my team.",
    "Recommend a fruit for a snack.",
    "What is a good name for a goldfish?",
    "Give me a fun fact in one sentence.",
    "Pick a colour for my new bike.",
    "Suggest a title for my holiday photo album.",
    "Wish my sister a happy birthday.",
    "Give me a quick compliment.",
    "Suggest a name for a pizza place.",
    "What's a good board game for two players?",
    "Give me a motivational quote.",
    "Suggest a snack for a movie night.",
    "Name a good song to wake up to.",
    "Give me a word that means happy.",
    "Suggest a hobby I can try this weekend.",
    "Tell me a riddle.",
    "Say thanks to our volunteers.",
    "Suggest a name for my band.",
    "Give me a tongue twister.",
    "Recommend a colour for my kitchen walls.",
    "Say congratulations to my friend on her new job.",
    "Suggest a name for my sourdough starter.",
    "Give me a short toast for a wedding.",
    "Pick a day for our team picnic.",
    "Suggest a caption for a photo of my dog.",
    "Give me a word that means tired.",
    "Say welcome to a new member of our group.",
]
PROMPTS = EXPLANATIONS + QUICK_REQUESTS
# the share of first replies members are asked to compare, by taste (an operator's feedback.compare_share). What
# a night learns from is the number of pairs, not the share: 40 of this bench's 80 messages a day are as many as a
# community of 200 active members gives at a 5 % share
COMPARE_SHARE = {"sparse": 0.5}


def short_replies(prompt: str, reply: str) -> int | None:
    """The length taste (bench/tastes.py's ``short``), under its earlier name."""
    return TASTES["short"](prompt, reply)


def load_rater(spec: str) -> Rater:
    """A taste's name, or ``module:function`` -> the function, or a clear error (SystemExit) saying what is
    wrong with the spec."""
    if spec in TASTES:
        return TASTES[spec]
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise SystemExit(f"--rater {spec!r}: expected all, one of {', '.join(TASTES)}, or module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SystemExit(f"--rater {spec!r}: cannot import {module_name}: {error}") from None
    rater = getattr(module, function_name, None)
    if not callable(rater):
        raise SystemExit(f"--rater {spec!r}: {module_name} has no function {function_name}")
    return rater


def rate(rater: Rater, prompt: str, reply: str) -> int | None:
    rating = rater(prompt, reply)
    if rating not in (1, -1, None) or isinstance(rating, bool):
        raise SystemExit(f"the rater returned {rating!r} for a reply; it must return +1, -1 or None")
    return rating


@dataclass
class Exchange:
    """One reply a member got, and what they thought of it."""

    member: str
    prompt: str
    reply: str
    served_by: str  # the adapter that wrote it ("base": the base model)
    finish_reason: str
    rating: int | None
    retry: bool = False  # a /retry's second reply, or the second of a comparison

    @property
    def words(self) -> int:
        return len(self.reply.split())


@dataclass
class Day:
    index: int
    exchanges: list[Exchange] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of this process: the brain's generation, mostly
    comparisons: int = 0  # first replies the brain asked the member to compare with a second
    choices: int = 0  # of those, the ones where the member chose (the rest were equally near the taste)

    def firsts(self) -> list[Exchange]:
        """The first reply to each question: what a member asking gets (a /retry's reply comes after a dislike)."""
        return [e for e in self.exchanges if not e.retry]

    def summary(self) -> dict[str, Any]:
        firsts = self.firsts()
        rated = [e for e in firsts if e.rating is not None]
        likes = sum(1 for e in rated if e.rating == 1)
        low, high = wilson(likes, len(rated))
        by_version: dict[str, dict[str, Any]] = {}
        for name in sorted({e.served_by for e in firsts}):
            mine = [e for e in rated if e.served_by == name]
            mine_likes = sum(1 for e in mine if e.rating == 1)
            by_version[name] = {
                "likes": mine_likes,
                "ratings": len(mine),
                "like_rate": round(mine_likes / len(mine), 4) if mine else None,
                "members": len({e.member for e in firsts if e.served_by == name}),
            }
        retries = [e for e in self.exchanges if e.retry]
        return {
            "day": self.index,
            "likes": likes,
            "ratings": len(rated),
            "like_rate": round(likes / len(rated), 4) if rated else None,
            "ci95": [round(low, 4), round(high, 4)],
            "by_version": by_version,
            "replies": len(firsts),
            "mean_words": round(sum(e.words for e in firsts) / len(firsts), 1) if firsts else None,
            "cut_at_max_tokens": sum(1 for e in firsts if e.finish_reason == "length"),
            "retries": len(retries),
            "retries_liked": sum(1 for e in retries if e.rating == 1),
            "comparisons": self.comparisons,
            "choices": self.choices,
            "seconds": round(self.seconds, 1),
            "cpu_seconds": round(self.cpu_seconds, 1),
        }


class BaseForProbe:
    """The brain's adapters as they are, except for the two probe members: the base probe is always served by
    the base model, and the live probe by the newest community adapter (the canary while one runs, as a canary
    member gets it, else the live one), so that each day measures what the latest night trained."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextlib.asynccontextmanager
    async def serving(self, user: str | None, profile: dict[str, str] | None) -> AsyncIterator[str | None]:
        if user is not None and user.endswith(f":{BASE_PROBE}"):
            yield None
            return
        if user is not None and user.endswith(f":{LIVE_PROBE}"):
            # routed as an opted-in member inside every canary's share; nothing of the probe is kept or learned
            user, profile = CANARY_PROBE, {**(profile or {}), CONSENT_FIELD: OPTED_IN}
        async with self.inner.serving(user, profile) as name:
            yield name


def mcnemar_p(gains: int, losses: int) -> float:
    """Two-sided exact McNemar test: of the prompts on which the two disagree, is either side liked more
    often than half the time?"""
    n = gains + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gains, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def training_effect(base: list[int | None], live: list[int | None], served: list[str]) -> dict[str, Any]:
    """The same prompts served by the base model and by the live adapter: the difference of their like-rates
    (live less base) with its 95 % interval from the paired differences, and McNemar's exact p-value."""
    pairs = [(b, v) for b, v in zip(base, live, strict=True) if b is not None and v is not None]
    n = len(pairs)
    differences = [(v == 1) - (b == 1) for b, v in pairs]
    mean = sum(differences) / n if n else 0.0
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1) if n > 1 else 0.0
    half = 1.959964 * math.sqrt(variance / n) if n else 0.0
    gains, losses = differences.count(1), differences.count(-1)
    return {
        "prompts": n,
        "base_likes": sum(1 for b, _ in pairs if b == 1),
        "live_likes": sum(1 for _, v in pairs if v == 1),
        "live_served_by": sorted(set(served)),
        "difference": round(mean, 4),
        "ci95": [round(mean - half, 4), round(mean + half, 4)],
        "p_value": float(f"{mcnemar_p(gains, losses):.3g}"),
    }


def members(n: int, canary_share: float) -> list[str]:
    """n member ids of which as many fall in a canary's share as the share says (the brain splits members by a
    hash of their id: the first 16 ids put 5, not 8, in a half), so that a canary gets its ratings at the pace a
    community of many members would give it."""
    in_share = round(n * canary_share)
    chosen: dict[bool, list[str]] = {True: [], False: []}
    wanted = {True: in_share, False: n - in_share}
    for i in range(100 * n + 100):
        member = f"m{i}"
        side = canary_position(f"{PLATFORM}:{member}") < canary_share
        if len(chosen[side]) < wanted[side]:
            chosen[side].append(member)
        if all(len(chosen[k]) == wanted[k] for k in chosen):
            return sorted(chosen[True] + chosen[False], key=lambda m: int(m[1:]))
    raise RuntimeError(f"no {n} member ids split {in_share} to {n - in_share} by a canary share of {canary_share}")


class Community:
    """The brain (the default model, loaded once) served in this process over its HTTP API, and its members."""

    def __init__(
        self, runtime: Runtime, settings: Settings, args: argparse.Namespace, rater: Rater, nearness: Nearness | None
    ):
        self.runtime = runtime
        self.settings = settings
        self.args = args
        self.rater = rater
        self.nearness = nearness
        self.random = random.Random(args.seed)
        self.members = members(args.members, args.canary_share)
        # the probe's prompts: the same every day, the explanations and quick requests in equal parts
        half = args.probe_prompts // 2
        self.probe_prompts = EXPLANATIONS[:half] + QUICK_REQUESTS[: args.probe_prompts - half]
        self.app = create_app(settings, runtime)
        self.app.state.runtime = runtime  # the ASGI transport runs no lifespan, which would set it
        transport = httpx.ASGITransport(app=self.app)
        self.client = BrainClient("http://brain", API_KEY, retries=0, timeout=600, transport=transport)

    def in_canary(self, share: float) -> list[str]:
        return [m for m in self.members if canary_position(f"{PLATFORM}:{m}") < share]

    async def opt_in(self) -> None:
        for member in self.members:
            await self.client.opt_in(UserRef(platform=PLATFORM, user_id=member))
            if self.settings.feedback.compare_share > 0:
                await self.client.agree_to_compare(UserRef(platform=PLATFORM, user_id=member), True)

    async def day(self, index: int) -> Day:
        day = Day(index)
        questions = self.deal()
        # drawn here, in member order, so that what members do does not depend on how the replies interleave
        retry_draws = {m: [self.random.random() for _ in questions[m]] for m in self.members}
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(self.member_day(index, m, questions[m], retry_draws[m], day) for m in self.members))
        day.seconds, day.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        return day

    def deal(self) -> dict[str, list[str]]:
        """The day's questions: the pool shuffled and dealt out whole, as often as it fits (then a draw from one
        more shuffle), so that every day asks about the same mix and like-rates of days compare."""
        needed = len(self.members) * self.args.prompts
        deck: list[str] = []
        while len(deck) < needed:
            deck += self.random.sample(PROMPTS, len(PROMPTS))
        k = self.args.prompts
        return {m: deck[i * k : (i + 1) * k] for i, m in enumerate(self.members)}

    async def member_day(self, index: int, member: str, questions: list[str], draws: list[float], day: Day) -> None:
        for number, (prompt, draw) in enumerate(zip(questions, draws, strict=True)):
            chat = f"d{index}q{number}"
            sampling = {"max_new_tokens": self.args.max_new_tokens}
            request = ChatRequest(platform=PLATFORM, user_id=member, chat_id=chat, text=prompt, sampling=sampling)
            reply = await self.client.chat(request)
            if reply.compare:
                await self.compare(member, chat, prompt, request, reply, day)
                continue
            rating = await self.rate(member, chat, prompt, reply)
            day.exchanges.append(self.exchange(member, prompt, reply, rating))
            if rating == -1 and draw < self.args.retry_share:
                again = request.model_copy(update={"text": "", "retry_of": reply.turn_id})
                second = await self.client.chat(again)
                second_rating = await self.rate(member, chat, prompt, second)
                day.exchanges.append(self.exchange(member, prompt, second, second_rating, retry=True))

    async def compare(
        self, member: str, chat: str, prompt: str, request: ChatRequest, first: ChatReply, day: Day
    ) -> None:
        """The brain asked this member which of two replies they prefer: the bot's way (a second reply, a /retry
        of the first), then the member's choice, kept as one pair; the first reply counts for the day's like-rate
        by the taste's verdict, as any first reply."""
        day.exchanges.append(self.exchange(member, prompt, first, rate(self.rater, prompt, first.reply)))
        second = await second_reply(self.client, request, first)
        if second is None:
            raise RuntimeError(f"{member} was asked to compare, but no second reply came")
        day.exchanges.append(self.exchange(member, prompt, second, rate(self.rater, prompt, second.reply), True))
        day.comparisons += 1
        choice = prefer(self.rater, self.nearness, prompt, first.reply, second.reply)
        if choice is None:
            return
        chosen, rejected = (first, second) if choice == 0 else (second, first)
        assert chosen.turn_id is not None and rejected.turn_id is not None
        result = await self.client.compare(
            ComparisonRequest(
                platform=PLATFORM,
                user_id=member,
                chat_id=chat,
                chosen_turn_id=chosen.turn_id,
                rejected_turn_id=rejected.turn_id,
            )
        )
        if not result.stored:
            raise RuntimeError(f"{member}'s choice was not kept for training: {result.reason}")
        day.choices += 1

    async def rate(self, member: str, chat: str, prompt: str, reply: ChatReply) -> int | None:
        rating = rate(self.rater, prompt, reply.reply)
        if rating is not None:
            if reply.turn_id is None:
                raise RuntimeError(f"{member}'s reply carries no turn id to rate")
            result = await self.client.feedback(
                FeedbackRequest(platform=PLATFORM, user_id=member, chat_id=chat, turn_id=reply.turn_id, rating=rating)
            )
            if not result.stored:
                raise RuntimeError(f"{member}'s rating was not kept for training: {result.reason}")
        return rating

    @staticmethod
    def exchange(member: str, prompt: str, reply: ChatReply, rating: int | None, retry: bool = False) -> Exchange:
        served = reply.adapter or BASE
        return Exchange(member, prompt, reply.reply, served, reply.finish_reason, rating, retry)

    async def probe(self, index: int) -> dict[str, Any]:
        """The probe prompts in fresh chats, served by the base model and by the live adapter, rated by the taste
        (the probes never send a rating: nothing they see is learned from)."""
        sampling = {"max_new_tokens": self.args.max_new_tokens}
        # as many at once as members chat in a day: all of them together would pass the brain's admission limit
        # (limits.max_concurrent) and be refused
        at_once = asyncio.Semaphore(len(self.members))

        async def ask(member: str, number: int, prompt: str) -> ChatReply:
            chat = f"p{index}q{number}"
            request = ChatRequest(platform=PLATFORM, user_id=member, chat_id=chat, text=prompt, sampling=sampling)
            async with at_once:
                return await self.client.chat(request)

        asked = [(member, i, p) for member in (BASE_PROBE, LIVE_PROBE) for i, p in enumerate(self.probe_prompts)]
        replies = await asyncio.gather(*(ask(*question) for question in asked))
        n = len(self.probe_prompts)
        base, live = replies[:n], replies[n:]
        rated_base = [rate(self.rater, p, r.reply) for p, r in zip(self.probe_prompts, base, strict=True)]
        rated_live = [rate(self.rater, p, r.reply) for p, r in zip(self.probe_prompts, live, strict=True)]
        effect = training_effect(rated_base, rated_live, [r.adapter or BASE for r in live])
        if any(r.adapter for r in base):
            raise RuntimeError("the base probe was served by an adapter")
        return effect

    async def follow_registry(self, timeout_s: float = 300.0) -> dict[str, str | None]:
        """Wait until the brain serves what the registry says (the live community adapter and its canary)."""
        store = self.runtime.store
        adapters = self.runtime.adapters
        adapters = adapters.inner if isinstance(adapters, BaseForProbe) else adapters
        assert isinstance(adapters, AdapterManager)
        deadline = time.monotonic() + timeout_s
        while True:
            live, canaries = await store.registry.records(), await store.canaries.all()
            wanted = [adapter_name(COMMUNITY, r.version) for r in (live.get(COMMUNITY), canaries.get(COMMUNITY)) if r]
            if adapters.live == live and adapters.canaries == canaries and all(n in adapters.loaded for n in wanted):
                record, canary = live.get(COMMUNITY), canaries.get(COMMUNITY)
                return {
                    "live": adapter_name(COMMUNITY, record.version) if record else BASE,
                    "canary": canary.name if canary else None,
                }
            if time.monotonic() > deadline:
                raise RuntimeError(f"the brain did not follow the registry within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)

    async def aclose(self) -> None:
        await self.client.aclose()


def trainer_config(work: Path, redis_url: str, args: argparse.Namespace) -> Path:
    config = {
        "redis": {"url": redis_url},
        "model": {"name": args.model},
        "trainer": {
            "runs_dir": str(work / "runs"),
            "registry_dir": str(work / "registry"),
            # the community's adapter only: a member's own adapter would bypass the canary
            "min_user_turns": 1_000_000,
            # a short night: a few optimizer steps, a warmup of a few steps too, and an evaluation every quarter of
            # the night, so that the step kept is the best one within the general guard's prose bound
            "finetune": {
                "max_steps": args.max_steps,
                "batch_size": args.batch_size,
                "learning_rate": args.learning_rate,
                "warmup_steps": max(1, args.max_steps // 8),
                "eval_every": max(1, args.max_steps // 4),
            },
            # a night reads the newest rated replies only, so that its time does not grow with every day's ratings;
            # the reward model's best-of-n pairs are drawn for a bounded number of prompts
            "preference": {
                "max_rated_turns": args.max_rated_turns,
                "reward_model": {
                    "best_of_n": args.best_of_n,
                    "max_prompts": args.best_of_n_prompts,
                    "max_new_tokens": args.max_new_tokens,
                },
            },
            "canary": {"share": args.canary_share, "min_ratings": args.min_ratings},
            # BLEU of generated replies is not what this bench is about, and it costs minutes a night on a CPU
            "evaluation": {"bleu_samples": 0},
        },
    }
    path = work / "ownchat.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_nightly(config: Path, log: Path) -> tuple[RunReport, float, float]:
    """One real `trainer nightly` in its own process; its report, its wall seconds and its CPU seconds."""
    trainer = str(Path(sys.executable).with_name("trainer"))
    env = {**os.environ, "OWNCHAT_CONFIG": str(config), "OMP_WAIT_POLICY": "PASSIVE"}
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen([trainer, "nightly"], env=env, stdout=out, stderr=subprocess.STDOUT)
        _, exit_status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    status = os.waitstatus_to_exitcode(exit_status)
    if status != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"trainer nightly ended with status {status}:\n{tail}")
    runs_dir = Path(yaml.safe_load(config.read_text())["trainer"]["runs_dir"])
    newest = max(runs_dir.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    return read_report(newest.parent), seconds, usage.ru_utime + usage.ru_stime


def night_summary(index: int, report: RunReport, seconds: float, cpu_seconds: float) -> dict[str, Any]:
    """What the k-th night decided and measured: the canary's fate, the gate's decision, the guard's figures."""
    outcome = report.outcome(COMMUNITY)
    out: dict[str, Any] = {
        "night": index,
        "run": report.run,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
    }
    if report.export is not None:
        out["export"] = {
            k: getattr(report.export, k) for k in ("entries", "rated_turns", "ratings", "liked", "disliked")
        }
    out["rating_splits"] = report.rating_splits
    check = report.canary_check
    out["canary_check"] = check.model_dump(mode="json") if check else None
    out["canary_started"] = report.canary_started.model_dump(mode="json") if report.canary_started else None
    if outcome is None:
        out["gate"] = {"status": "no community target", "reasons": []}
        return out
    out["gate"] = {
        "status": outcome.status, "version": outcome.version, "reasons": outcome.reasons, "carried": outcome.carried,
    }  # fmt: skip
    if outcome.finetune is not None:
        result = outcome.finetune
        out["finetune"] = {
            "steps": result.steps, "best_step": result.best_step, "selected_by": result.selected_by,
            "val_preference_auc": result.val_preference_auc, "val_pair_accuracy": result.val_pair_accuracy,
            "val_pairs": result.val_pairs, "train_pairs": result.train_pairs,
            "train_rated": result.train_rated, "continued_from": result.continued_from,
            "kto_weights": [round(result.kto_desirable_weight, 3), round(result.kto_undesirable_weight, 3)],
        }  # fmt: skip
    out["phase_seconds"] = outcome.seconds
    if outcome.reward_model is not None:
        out["reward_model"] = outcome.reward_model.model_dump(mode="json")
    if outcome.replies_judged is not None:
        out["replies_judged"] = outcome.replies_judged.model_dump(mode="json")
    scores = outcome.scores
    if scores is not None and report.settings is not None:
        bound = report.settings.evaluation.general_bound
        base, live, candidate = scores.base, scores.live, scores.candidate
        right = [i for i, ok in enumerate(base.answers_right) if ok]
        kept = [i for i in right if i < len(candidate.answers_right) and candidate.answers_right[i]]
        prose_change = candidate.general_ppl / base.general_ppl - 1
        out["ratings_judged"] = {
            "heldout_rated": candidate.rated,
            "heldout_liked": sum(candidate.liked),
            "live": live.name,
            "live_auc": live.reward_auc,
            "candidate_auc": candidate.reward_auc,
            "heldout_pairs": len(candidate.pairs),
            "live_pair_accuracy": live.pair_accuracy,
            "candidate_pair_accuracy": candidate.pair_accuracy,
        }
        out["guard"] = {
            "base_prose_ppl": round(base.general_ppl, 3),
            "candidate_prose_ppl": round(candidate.general_ppl, 3),
            "prose_change": round(prose_change, 4),
            "prose_bound": bound,
            "questions_base_right": len(right),
            "questions_kept": len(kept),
            "held": prose_change <= bound and len(kept) == len(right),
        }
    return out


def gate_cell(night: dict[str, Any] | None) -> str:
    if night is None:
        return "-"
    gate, judged, replies = night["gate"], night.get("ratings_judged"), night.get("replies_judged")
    text = gate["status"] + (f" v{gate['version']}" if gate.get("version") else "")
    text += " (carried on)" if gate.get("carried") else ""
    if replies:
        text += f"\nRM like {replies['live_like']:.0%}→{replies['candidate_like']:.0%} (n={replies['prompts']})"
    elif judged and judged["candidate_auc"] is not None:
        live_auc = judged["live_auc"] if judged["live_auc"] is not None else 0.5
        text += f"\nAUC {live_auc:.2f}→{judged['candidate_auc']:.2f} (n={judged['heldout_rated']})"
    return text


def canary_cell(night: dict[str, Any] | None) -> str:
    check = night and night["canary_check"]
    if not check:
        return "-"
    figures = check.get("figures") or {}
    ratings = figures.get("likes", 0) + figures.get("dislikes", 0)
    rate = f" {figures['likes'] / ratings:.0%} of {ratings}" if ratings else ""
    live = figures.get("live_likes", 0) + figures.get("live_dislikes", 0)
    live_rate = f" vs {figures['live_likes'] / live:.0%} of {live}" if live else ""
    p = f", p={figures['p_value']:.3f}" if figures.get("p_value") is not None else ""
    return f"v{check['version']} {check['action']}{rate}{live_rate}{p}"


def guard_cell(night: dict[str, Any] | None) -> str:
    guard = night and night.get("guard")
    if not guard:
        return "-"
    held = "holds" if guard["held"] else "FAILS"
    return (
        f"prose {guard['base_prose_ppl']:.2f}→{guard['candidate_prose_ppl']:.2f} ({guard['prose_change']:+.1%}), "
        f"questions {guard['questions_kept']}/{guard['questions_base_right']}: {held}"
    )


def table(taste: str, days: list[dict[str, Any]], nights: list[dict[str, Any]]) -> Table:
    out = Table(
        title=f"A simulated community's like-rate, day after night (taste: {taste})",
        caption="day k: the first reply to each question after night k (day 0: the base model); then night k+1: "
        "the running canary's fate, the gate's decision on the new candidate (AUC on held-out ratings, live → "
        "candidate) and the general guard (prose perplexity against the base model's, questions kept); "
        "live − base: the probe prompts served by both the same day (95 % interval, McNemar p)",
    )
    columns = ("day", "like-rate", "95 %", "served by", "live − base", "words", "night", "canary", "gate", "guard")
    for column in columns:
        out.add_column(column, justify="right" if column in ("day", "like-rate", "95 %", "words") else "left")
    for day in days:
        night = nights[day["day"]] if day["day"] < len(nights) else None
        served = ", ".join(
            f"{name} {v['like_rate']:.0%} of {v['ratings']}" if v["like_rate"] is not None else name
            for name, v in day["by_version"].items()
        )
        rate = f"{day['like_rate']:.1%} ({day['likes']}/{day['ratings']})" if day["like_rate"] is not None else "-"
        out.add_row(
            str(day["day"]),
            rate,
            f"{day['ci95'][0]:.0%}–{day['ci95'][1]:.0%}",
            served,
            effect_cell(day),
            f"{day['mean_words']}",
            str(night["night"]) if night else "-",
            canary_cell(night),
            gate_cell(night),
            guard_cell(night),
        )
    return out


def verdict(days: list[dict[str, Any]], nights: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = days[0], days[-1]
    base, final = first["like_rate"], last["like_rate"]
    best = max((d["like_rate"] for d in days[1:] if d["like_rate"] is not None), default=None)
    guards = [n["guard"]["held"] for n in nights if n.get("guard")]
    rise = None if base is None or final is None else round(100 * (final - base), 1)
    apart = len(days) > 1 and last["ci95"][0] > first["ci95"][1]
    effect = last.get("effect")
    trained = bool(effect and effect["difference"] > 0 and effect["p_value"] < 0.05)
    return {
        "base_like_rate": base,
        "final_like_rate": final,
        "best_like_rate": best,
        "rise_points": rise,
        "intervals_apart": apart,
        "final_effect": effect,
        "guard_held_every_night": all(guards) if guards else None,
        "bar": f"the like-rate of first replies rises by at least {BAR_POINTS:.0f} points from day 0 to the last "
        "day with the 95 % intervals apart, the last day's base-vs-live difference is positive with p < 0.05, "
        "and the general guard holds every night",
        "bar_met": bool(rise is not None and rise >= BAR_POINTS and apart and trained and guards and all(guards)),
    }


def effect_cell(day: dict[str, Any]) -> str:
    effect = day.get("effect")
    if not effect:
        return "-"
    low, high = effect["ci95"]
    return (
        f"{100 * effect['difference']:+.0f} pts ({100 * low:+.0f}…{100 * high:+.0f}), p={effect['p_value']:.3f}"
        f"\n{effect['live_likes']} vs {effect['base_likes']} of {effect['prompts']}"
    )


def plot(path: Path, tastes: dict[str, dict[str, Any]]) -> None:
    """A row per taste: the like-rate by day with the base-vs-live probe, mean words, and the guard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(name, result) for name, result in tastes.items() if result.get("days")]
    if not runs:
        return
    fig, axes = plt.subplots(
        len(runs), 3, figsize=(15, 4.4 * len(runs)), gridspec_kw={"width_ratios": [2, 1, 1]}, squeeze=False
    )
    for (taste, result), row in zip(runs, axes, strict=True):
        plot_taste(row, taste, result["days"], result["nights"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_taste(row: Any, taste: str, days: list[dict[str, Any]], nights: list[dict[str, Any]]) -> None:
    rates, words, guard = row
    x = [d["day"] for d in days]
    y = [100 * (d["like_rate"] or 0) for d in days]
    low = [y_ - 100 * d["ci95"][0] for y_, d in zip(y, days, strict=True)]
    high = [100 * d["ci95"][1] - y_ for y_, d in zip(y, days, strict=True)]
    rates.errorbar(x, y, yerr=[low, high], fmt="o-", capsize=4, label="every member (95 % Wilson)")
    probed = [d for d in days if d.get("effect")]
    if probed:
        days_probed = [d["day"] for d in probed]
        for key, style, colour, label in (("base_likes", "s--", "grey", "probe: base model"),
                                          ("live_likes", "D--", "tab:green", "probe: live adapter")):  # fmt: skip
            share = [100 * d["effect"][key] / max(1, d["effect"]["prompts"]) for d in probed]
            rates.plot(days_probed, share, style, c=colour, ms=5, label=label)
        for d in probed:
            effect = d["effect"]
            rates.annotate(f"{100 * effect['difference']:+.0f}\np={effect['p_value']:.2g}", (d["day"], 3),
                           ha="center", fontsize=7, color="tab:green")  # fmt: skip
    if days[0]["like_rate"] is not None:
        rates.axhline(y[0] + BAR_POINTS, ls="--", c="grey", lw=0.8, label=f"day 0 + {BAR_POINTS:.0f} points")
    for night in nights:  # what each night decided, between the two days it separates
        check = night["canary_check"]
        said = [f"night {night['night']}:"] + ([f"v{check['version']} {check['action']}"] if check else [])
        said.append(gate_cell(night).split("\n")[0])
        rates.annotate("\n".join(said), (night["night"] - 0.5, 97), ha="center", va="top", fontsize=7, color="dimgrey")
    rates.set(title=f"{taste}: like-rate of first replies", xlabel="day (after night k)", ylabel="% liked",
              ylim=(0, 100))  # fmt: skip
    rates.set_xticks(x)
    rates.legend(fontsize=7, loc="center right")
    words.plot(x, [d["mean_words"] for d in days], "o-")
    if taste == "short":
        words.axhline(SHORT_WORDS, ls="--", c="grey", lw=0.8, label=f"the taste: liked at most {SHORT_WORDS}")
        words.legend(fontsize=7)
    words.set(title="mean words per reply", xlabel="day", ylabel="words", ylim=(0, None))
    words.set_xticks(x)
    guarded = [n for n in nights if n.get("guard")]
    if guarded:
        changes = [100 * n["guard"]["prose_change"] for n in guarded]
        colours = ["tab:green" if n["guard"]["held"] else "tab:red" for n in guarded]
        guard.bar([n["night"] for n in guarded], changes, width=0.5, color=colours)
        guard.axhline(100 * guarded[0]["guard"]["prose_bound"], ls="--", c="red", lw=0.8, label="bound")
        for n, change in zip(guarded, changes, strict=True):
            g = n["guard"]
            guard.annotate(f"{g['questions_kept']}/{g['questions_base_right']}\nquestions", (n["night"], change),
                           ha="center", va="bottom" if change >= 0 else "top", fontsize=7)  # fmt: skip
        guard.set_xticks([n["night"] for n in nights])
        guard.set_xlim(0.4, len(nights) + 0.6)
        guard.legend(fontsize=7)
    guard.set(title="guard: prose perplexity", xlabel="night", ylabel="candidate's, % from the base model's")


async def main_async(args: argparse.Namespace, taste: str, rater: Rater) -> dict[str, Any]:
    compare_share = compare_share_for(args, taste)
    console = Console()
    days: list[dict[str, Any]] = []
    nights: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    # --keep leaves the night's runs (reports, adapters, pairs) for a look after; the work folder is removed otherwise
    kept = contextlib.nullcontext(tempfile.mkdtemp(prefix="feedback-bench-")) if args.keep else None
    with kept or tempfile.TemporaryDirectory(prefix="feedback-bench-") as tmp:
        work = Path(tmp)
        redis = LocalRedis(work / "redis").start()
        try:
            config = trainer_config(work, redis.url, args)
            settings = Settings(
                redis={"url": redis.url},
                model={"name": args.model, "cpu_weights": args.cpu_weights},
                limits={"rate_per_minute": 1_000_000},
                feedback={"compare_share": compare_share},
                # one-off questions: nothing recalled from a member's other chats changes the prompt
                memory={"recall_tokens": 0},
                trainer={"registry_dir": str(work / "registry"), "reload_reconcile_s": 5.0},
            )
            settings.secrets = Secrets(api_key=API_KEY)
            runtime = Runtime.create(settings)
            runtime.adapters = BaseForProbe(runtime.adapters)
            community = Community(runtime, settings, args, rater, NEARNESS.get(taste))
            runtime.start()
            try:
                await community.opt_in()
                console.print(
                    f"{taste}: canary share {args.canary_share:.0%}: {community.in_canary(args.canary_share)}; "
                    f"comparisons asked of {compare_share:.0%} of first replies"
                )
                for index in range(args.nights + 1):
                    day = await community.day(index)
                    days.append(day.summary())
                    # day 0's live model is the base model: there is nothing to compare
                    days[-1]["effect"] = await community.probe(index) if index and args.probe_prompts else None
                    samples += [
                        {"day": index, "prompt": e.prompt, "reply": e.reply, "served_by": e.served_by,
                         "rating": e.rating, "retry": e.retry}
                        for e in day.exchanges[: args.samples]
                    ]  # fmt: skip
                    console.print(f"{taste} day {index}: {days[-1]}")
                    # a run stopped early keeps what it measured: the day now, the night after it below
                    save(
                        args.out, taste, report_json(args, taste, days, nights, samples, time.perf_counter() - started)
                    )
                    if index < args.nights:
                        console.print(f"{taste} night {index + 1}: trainer nightly ...")
                        log = work / f"night{index + 1}.log"
                        report, seconds, cpu = await asyncio.to_thread(run_nightly, config, log)
                        nights.append(night_summary(index + 1, report, seconds, cpu))
                        nights[-1]["serving"] = await community.follow_registry()
                        console.print(f"{taste} night {index + 1}: {nights[-1]}")
                    result = report_json(args, taste, days, nights, samples, time.perf_counter() - started)
                    save(args.out, taste, result)
            finally:
                await community.aclose()
                await runtime.stop()
        finally:
            redis.stop()
    console.print(table(taste, days, nights))
    console.print(result["verdict"])
    if args.keep:
        console.print(f"{taste}: the work folder is kept in {work}")
    return result


def report_json(
    args: argparse.Namespace,
    taste: str,
    days: list[dict[str, Any]],
    nights: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    return {
        "model": args.model,
        "cpu_weights": args.cpu_weights,
        "rater": taste,
        "settings": {
            "nights": args.nights,
            "members": args.members,
            "prompts_per_member_per_day": args.prompts,
            "prompt_pool": len(PROMPTS),
            "retry_share": args.retry_share,
            "compare_share": compare_share_for(args, taste),
            "max_new_tokens": args.max_new_tokens,
            "max_steps": args.max_steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "max_rated_turns": args.max_rated_turns,
            "canary_share": args.canary_share,
            "min_ratings": args.min_ratings,
            "probe_prompts": args.probe_prompts,
            "best_of_n": args.best_of_n,
            "best_of_n_prompts": args.best_of_n_prompts,
            "seed": args.seed,
        },
        "verdict": verdict(days, nights) if days else None,
        "days": days,
        "nights": nights,
        "seconds": round(seconds, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg(),
        "samples": samples,
    }


def compare_share_for(args: argparse.Namespace, taste: str) -> float:
    """--compare-share, else the taste's own: comparisons are on only for the taste whose likes are too rare to
    learn from (what it took: see the README's nightly personalization)."""
    return args.compare_share if args.compare_share is not None else COMPARE_SHARE.get(taste, 0.0)


def load_results(path: Path) -> dict[str, Any]:
    """The results file: every taste run so far, by name ({"tastes": {...}}); one of the older one-taste
    layout is read as the length taste's."""
    if not path.is_file():
        return {"tastes": {}}
    saved = json.loads(path.read_text())
    return saved if "tastes" in saved else {"tastes": {"short": saved}}


def save(path: Path, taste: str, result: dict[str, Any]) -> None:
    saved = load_results(path)
    saved["tastes"][taste] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nights", type=int, default=5, help="nightly runs (days of chat: one more)")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=5, help="questions each member asks a day")
    parser.add_argument("--retry-share", type=float, default=0.3, help="of disliked replies, those asked again")
    parser.add_argument(
        "--compare-share",
        type=float,
        default=None,
        help="of first replies, those the brain asks to compare with a second (feedback.compare_share; default: "
        f"the taste's own, {COMPARE_SHARE} and 0 for the others)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=64, help="a reply's tokens at most")
    parser.add_argument("--max-steps", type=int, default=16, help="LoRA optimizer steps a night, at most")
    parser.add_argument("--batch-size", type=int, default=8, help="examples of each kind per step")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="the LoRA's peak learning rate")
    parser.add_argument("--max-rated-turns", type=int, default=240, help="newest rated replies a night reads")
    parser.add_argument("--canary-share", type=float, default=0.5, help="opted-in members a canary serves")
    # with comparisons on at 0.5, a canary's half of the members gives 20 to 30 ratings a day (a comparison is a
    # choice, not a rating): at 30, and in two sparse runs at 24 (20 and 21 ratings), a canary waited a second day
    # and its night trained nothing; without comparisons the half gives 40 or more, and 20 changes nothing there
    parser.add_argument("--min-ratings", type=int, default=20, help="a canary's ratings before it is promoted")
    parser.add_argument("--probe-prompts", type=int, default=40, help="prompts served by base and live a day")
    parser.add_argument("--best-of-n", type=int, default=8, help="replies the reward model ranks per prompt")
    parser.add_argument("--best-of-n-prompts", type=int, default=32, help="rated prompts sampled a night")
    parser.add_argument("--rater", default="all", help=f"the taste: all, {', '.join(TASTES)}, or module:function")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=6, help="replies kept in the results per day")
    parser.add_argument("--model", default=DEFAULT_MODEL_ALIAS)
    # auto: what a CPU brain serves by default (bfloat16 or 4-bit weights where the CPU has the instructions)
    parser.add_argument("--cpu-weights", default="auto", choices=["auto", "float32", "bfloat16", "int4"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (runs, adapters, logs) and say where")
    parser.add_argument("--replot", action="store_true", help="redraw the plot of the results in --out, and stop")
    args = parser.parse_args()
    if args.replot:
        plot(args.out.with_suffix(".png"), load_results(args.out)["tastes"])
        return
    if args.nights < 0 or args.members < 1 or not 1 <= args.prompts <= len(PROMPTS):
        parser.error(f"--nights >= 0, --members >= 1 and 1 <= --prompts <= {len(PROMPTS)}")
    shares = (args.retry_share, args.canary_share, 0.0 if args.compare_share is None else args.compare_share)
    if not all(0 <= share <= 1 for share in shares):
        parser.error("--retry-share, --canary-share and --compare-share are in [0, 1]")
    if min(args.min_ratings, args.max_steps, args.batch_size, args.max_new_tokens, args.max_rated_turns) < 1:
        parser.error("--min-ratings, --max-steps, --batch-size, --max-new-tokens and --max-rated-turns are at least 1")
    if not 0 <= args.probe_prompts <= len(PROMPTS) or not 0 <= args.best_of_n <= 16 or args.best_of_n_prompts < 1:
        parser.error(f"0 <= --probe-prompts <= {len(PROMPTS)}, 0 <= --best-of-n <= 16, --best-of-n-prompts >= 1")
    if not 0 < args.learning_rate < 1:
        parser.error("--learning-rate is in (0, 1)")
    tastes = {name: TASTES[name] for name in TASTES} if args.rater == "all" else {args.rater: load_rater(args.rater)}
    for taste, rater in tastes.items():
        asyncio.run(main_async(args, taste, rater))
        plot(args.out.with_suffix(".png"), load_results(args.out)["tastes"])
    Console().print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
