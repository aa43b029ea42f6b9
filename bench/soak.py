"""Soak benchmark: many users mix valid and malformed requests while Redis is killed and restarted.

For ``--duration`` seconds, ``--users`` simulated users talk to a brain (uvicorn in a subprocess) over its
HTTP API. Each loops, with a short pause between steps, over valid requests (chats, some streamed;
OpenAI-style chat completions, some streamed; persona changes; /optin; memory reads) and, a quarter of the
time, malformed ones of many kinds (see BAD). Meanwhile the real redis-server (AOF, fsync always) is killed
with -9 and restarted on the same data ``--redis-restarts`` times.

The bars (the script exits 1 when one is missed):
- no server error from bad input: no 5xx and no missing answer (a 503 while Redis is down is expected);
- no server error on valid requests outside the Redis outages;
- no acknowledged turn lost: every chat answered 200 is, at the end, in its chat's memory, and in the user's
  training log where the reply said ``logged``;
- the brain's resident memory flat: at the end within 5 % of what it was when warm-up (the first 20 %) ended.

By default the brain serves a small random model built from a config (the soak tests the service, not the
model, and runs on 2 CPU cores); ``--model smollm2-135m-instruct`` serves the real default model.

    python bench/soak.py                                   # 10 minutes, 24 users, 2 Redis restarts
    python bench/soak.py --duration 60 --redis-restarts 1  # a quick look

Prints tables and writes bench/results/soak.json and bench/results/soak.png (the brain's RSS over time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
import yaml
from rich.console import Console
from rich.table import Table

from bot.client import BrainClient, BrainError, BrainUnavailable
from brain.api_models import ChatReply, ChatRequest, PersonaSet, UserRef
from brain.redis_local import LocalRedis, free_port

RESULTS = Path(__file__).parent / "results"
PLATFORM = "soak"
# malformed chats that the brain accepts anyway land in this chat, away from the chats whose turns are checked
JUNK_CHAT = "junk"
# exchanges in one chat before a user moves to a new chat id: 4 exchanges (8 turns) stay far below
# memory.max_turns and max_tokens, so no acknowledged turn is folded into a summary before it is checked
TURNS_PER_CHAT = 4
THINK_S = 0.5  # a user's pause between two steps, at most
BAD_SHARE = 0.25
OUTAGE_S = 3.0  # how long Redis stays down each time
# a request sent just after the brain is ready again may still have met the outage on its way; a 503 later
# than this after readiness counts as a server error
GRACE_S = 3.0
WARMUP_SHARE = 0.2
RSS_BAR = 1.05
REQUEST_TIMEOUT_S = 60.0
STORAGE_CODES = {"storage_unavailable", "not_ready"}
QUESTIONS = [
    "Explain how a rainbow forms.",
    "Write a short poem about the sea.",
    "Give me three tips for learning to cook.",
    "What is the capital of France?",
    "Why is the sky blue?",
    "How do I make a good cup of tea?",
    "Tell me a short story about a brave mouse.",
    "How does a bicycle stay upright?",
    "What should I pack for a weekend hiking trip?",
    "Suggest a name for a friendly robot and say why.",
    "How can I sleep better at night?",
    "Write a haiku about autumn leaves. Café, naïve, jalapeño, 東京.",
]
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
T = TypeVar("T")


# malformed requests: each builds (method, path, httpx keyword arguments) for a user


Request = tuple[str, str, dict[str, Any]]


def _raw(content: bytes) -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": "application/json"}}


def _json(body: dict[str, Any]) -> dict[str, Any]:
    # encoded here, not by httpx: its encoder refuses NaN and lone surrogates, which are the point
    return _raw(json.dumps(body).encode())


def _chat(ref: UserRef, **fields: Any) -> dict[str, Any]:
    body = {"platform": ref.platform, "user_id": ref.user_id, "chat_id": JUNK_CHAT, "text": "Hello there!"}
    return _json(body | fields)


def _oai(**fields: Any) -> dict[str, Any]:
    return _json({"messages": [{"role": "user", "content": "Hello there!"}], "max_tokens": 8} | fields)


def _persona(ref: UserRef, **fields: Any) -> dict[str, Any]:
    return _json({"platform": ref.platform, "user_id": ref.user_id, "chat_id": JUNK_CHAT} | fields)


def _users(ref: UserRef) -> str:
    return f"/v1/users/{ref.platform}/{ref.user_id}"


# a chara_card_v2 whose macros expand to about 10 MB before any length check could refuse it
MACRO_CARD = {
    "spec": "chara_card_v2",
    "data": {
        "name": "N" * 1000,
        "description": "{{char}} " * 1000,
        "personality": "{{user}} " * 1000,
        "system_prompt": "{{original}} " * 10,
        "first_mes": "{{char}}" * 1000,
    },
}

BAD: dict[str, Callable[[UserRef], Request]] = {
    "seed 2**64 (openai)": lambda ref: ("POST", "/v1/chat/completions", _oai(seed=2**64)),
    "temperature 1e-30 (chat)": lambda ref: ("POST", "/v1/chat", _chat(ref, sampling={"temperature": 1e-30})),
    "temperature 1e-30 (openai)": lambda ref: ("POST", "/v1/chat/completions", _oai(temperature=1e-30)),
    "temperature 'NaN' (openai)": lambda ref: ("POST", "/v1/chat/completions", _oai(temperature="NaN")),
    "temperature NaN literal (openai)": lambda ref: ("POST", "/v1/chat/completions", _oai(temperature=float("nan"))),
    "top_p 'NaN' (chat)": lambda ref: ("POST", "/v1/chat", _chat(ref, sampling={"top_p": "NaN"})),
    "top_k 2**64 (chat)": lambda ref: ("POST", "/v1/chat", _chat(ref, sampling={"top_k": 2**64})),
    "negative max tokens (openai)": lambda ref: ("POST", "/v1/chat/completions", _oai(max_tokens=-5)),
    "negative max tokens (chat)": lambda ref: ("POST", "/v1/chat", _chat(ref, sampling={"max_new_tokens": -1})),
    "stop [''] (openai)": lambda ref: ("POST", "/v1/chat/completions", _oai(stop=[""])),
    "token ids out of range (completions)": lambda ref: (
        "POST",
        "/v1/completions",
        _json({"prompt": [-1, 10**12], "max_tokens": 4}),
    ),
    "lone surrogate in text": lambda ref: ("POST", "/v1/chat", _chat(ref, text="Hi \ud800 there")),
    "invalid UTF-8 body": lambda ref: (
        "POST",
        "/v1/chat",
        _raw(_chat(ref)["content"].replace(b"Hello", b"\xff\xed\xa0\x80")),
    ),
    "not JSON": lambda ref: ("POST", "/v1/chat", _raw(b"{this is not json")),
    "empty message": lambda ref: ("POST", "/v1/chat", _chat(ref, text="  \n ")),
    "oversized text (20k chars)": lambda ref: ("POST", "/v1/chat", _chat(ref, text="a" * 20_000)),
    "oversized body (4 MB)": lambda ref: ("POST", "/v1/chat", _chat(ref, text="b" * 4_000_000)),
    "persona card with macros": lambda ref: ("PUT", f"{_users(ref)}/persona", _persona(ref, card=MACRO_CARD)),
    "huge custom persona (100k)": lambda ref: ("PUT", f"{_users(ref)}/persona", _persona(ref, custom="x" * 100_000)),
    "user id with newline": lambda ref: ("GET", f"{_users(ref)}%0A/consent", {}),
    "platform with newline (optin)": lambda ref: ("POST", f"/v1/users/{ref.platform}%0A/{ref.user_id}/optin", {}),
    "chat id with newline (memory)": lambda ref: ("GET", f"{_users(ref)}/chats/c0%0A/memory", {}),
    "wrong type: text a number": lambda ref: ("POST", "/v1/chat", _chat(ref, text=123)),
    "wrong type: user_id a list": lambda ref: ("POST", "/v1/chat", _chat(ref, user_id=[1, 2])),
    "wrong type: sampling a string": lambda ref: ("POST", "/v1/chat", _chat(ref, sampling="hot")),
    "wrong type: messages a string": lambda ref: ("POST", "/v1/chat/completions", _oai(messages="hi")),
    "wrong type: card a list": lambda ref: ("PUT", f"{_users(ref)}/persona", _persona(ref, card=[1, 2])),
}

VALID_PERSONAS: list[dict[str, Any]] = [
    {"custom": "You are a calm librarian who answers in one sentence."},
    {"card": {"spec": "chara_card_v2", "data": {"name": "Mira", "description": "{{char}} bakes for {{user}}."}}},
]
VALID_WEIGHTS = {
    "chat": 30,
    "chat (streamed)": 15,
    "chat completions": 8,
    "chat completions (streamed)": 4,
    "persona change": 8,
    "optin": 3,
    "memory read": 8,
}


@dataclass
class Tally:
    requests: int = 0
    ok: int = 0
    refused: int = 0  # 4xx
    server_errors: int = 0  # 5xx that neither a Redis outage nor admission control explains
    expected_503: int = 0  # Redis down (during an outage) or busy (admission control)
    no_answer: int = 0  # timeouts, dropped connections, streams that stopped short
    latencies: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)  # when the first few of each answer were sent


@dataclass
class Outage:
    killed: float
    back: float | None = None

    def covers(self, started: float, ended: float) -> bool:
        return ended >= self.killed and (self.back is None or started <= self.back + GRACE_S)


@dataclass
class Acked:
    user_id: str
    chat_id: str
    text: str
    reply: str
    logged: bool


@dataclass
class SimUser:
    ref: UserRef
    chat: int = 0
    sent_in_chat: int = 0
    sent: int = 0

    @property
    def chat_id(self) -> str:
        return f"c{self.chat}"

    def next_chat_id(self) -> str:
        """The chat of the next message: a fresh one every TURNS_PER_CHAT messages, whether answered or not."""
        if self.sent_in_chat == TURNS_PER_CHAT:
            self.chat, self.sent_in_chat = self.chat + 1, 0
        self.sent_in_chat += 1
        self.sent += 1
        return self.chat_id


# the small model, Redis and the brain


def build_small_model(path: Path, seed: int) -> Path:
    """A random 2-layer Llama with a byte-level BPE tokenizer that knows ChatML, written like any model dir."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, initial_alphabet=alphabet, show_progress=False
    )
    bpe.train_from_iterator(QUESTIONS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token=special[0], bos_token=special[1], eos_token=special[2]
    )
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def start_redis(server: LocalRedis) -> None:
    """Start (or restart on the same data) with every write fsynced before it is acknowledged."""
    server.start()
    client = redis.Redis.from_url(server.url)
    try:
        client.config_set("appendfsync", "always")
    finally:
        client.close()


class BrainProcess:
    """`brain serve` in a subprocess, configured by a YAML file and the environment, as an operator runs it."""

    def __init__(self, work: Path, redis_url: str, model: str, small_model: bool, prefix_cache_mib: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = secrets.token_urlsafe(24)
        self.log_path = work / "brain.log"
        # the prefix cache fills up to its budget by design: a small budget shows what else the memory does
        model_settings: dict[str, Any] = {"name": model, "max_new_tokens": 32, "prefix_cache_mib": prefix_cache_mib}
        if small_model:
            model_settings |= {"context_tokens": 1024, "device": "cpu"}
        config = {
            "redis": {"url": redis_url},
            "model": model_settings,
            # the soak tests robustness, not the per-user rate limiter
            "limits": {"rate_per_minute": 100_000},
            "trainer": {"registry_dir": str(work / "registry"), "runs_dir": str(work / "runs")},
        }
        (work / "ownchat.yaml").write_text(yaml.safe_dump(config))
        env = {name: value for name, value in os.environ.items() if not name.startswith("OWNCHAT_")}
        env |= {"OWNCHAT_CONFIG": str(work / "ownchat.yaml"), "OWNCHAT_API_KEY": self.api_key}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads collapse on shared cores
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "brain", "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not _ready(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"the brain exited with {self.process.returncode}; see its log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the brain was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def rss_mib(self) -> float:
        try:
            import psutil

            return psutil.Process(self.process.pid).memory_info().rss / 2**20
        except ImportError:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def exceptions(self) -> list[dict[str, Any]]:
        """The exceptions the brain logged, by type and message, most frequent first."""
        found: Counter[str] = Counter()
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): ?(.*)$", line)
            if match:
                found[f"{match.group(1)}: {match.group(2)[:160]}"] += 1
        return [{"exception": text, "count": count} for text, count in found.most_common(20)]


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# the load


class Soak:
    def __init__(self, args: argparse.Namespace, brain: BrainProcess, server: LocalRedis):
        self.args, self.brain, self.redis = args, brain, server
        self.client = BrainClient(brain.url, brain.api_key, timeout=REQUEST_TIMEOUT_S, retries=0)
        self.http = httpx.AsyncClient(
            base_url=brain.url,
            headers={"Authorization": f"Bearer {brain.api_key}"},
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=args.users * 2 + 8),
        )
        self.tallies: dict[str, Tally] = {}
        self.outages: list[Outage] = []
        self.acked: list[Acked] = []
        self.rss: list[tuple[float, float]] = []
        self.presets: list[str] = []
        self.t0 = time.monotonic()
        self.brain_died = False

    def clock(self) -> float:
        return time.monotonic() - self.t0

    @property
    def running(self) -> bool:
        return self.clock() < self.args.duration and not self.brain_died

    async def run(self) -> dict[str, Any]:
        self.presets = [persona.name for persona in await self.client.personas()]
        self.t0 = time.monotonic()
        sampler = asyncio.create_task(self.sample_rss())
        restarts = asyncio.create_task(self.restart_redis())
        await asyncio.gather(*(self.user(index) for index in range(self.args.users)))
        await restarts
        load_s = self.clock()
        sampler.cancel()
        if self.brain.process.poll() is not None:
            self.brain_died = True
        if self.brain_died:
            lost = [{"why": "the brain exited during the run"}]
        else:
            self.rss.append((round(self.clock(), 1), round(self.brain.rss_mib(), 1)))
            lost = await self.verify()
        await self.client.aclose()
        await self.http.aclose()
        return self.summary(load_s, lost)

    async def sample_rss(self) -> None:
        interval = min(5.0, max(1.0, self.args.duration / 150))
        while True:
            if self.brain.process.poll() is not None:
                self.brain_died = True
                return
            self.rss.append((round(self.clock(), 1), round(self.brain.rss_mib(), 1)))
            await asyncio.sleep(interval)

    async def restart_redis(self) -> None:
        count = self.args.redis_restarts
        for number in range(1, count + 1):
            await asyncio.sleep(max(0.0, self.args.duration * number / (count + 1) - self.clock()))
            outage = Outage(self.clock())
            self.outages.append(outage)
            await asyncio.to_thread(self.redis.kill)
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(start_redis, self.redis)
            try:
                await asyncio.to_thread(self.brain.wait_ready, 60)
            except RuntimeError:
                self.brain_died = True
                return
            outage.back = self.clock()

    async def user(self, index: int) -> None:
        rng = random.Random(f"{self.args.seed}:{index}")
        me = SimUser(UserRef(platform=PLATFORM, user_id=f"u{index:03d}"))
        if rng.random() < 0.5:
            await self.call("optin", self.client.opt_in(me.ref))
        valid = {
            "chat": lambda: self.chat(me, rng, stream=False),
            "chat (streamed)": lambda: self.chat(me, rng, stream=True),
            "chat completions": lambda: self.completion(rng, stream=False),
            "chat completions (streamed)": lambda: self.completion(rng, stream=True),
            "persona change": lambda: self.persona(me, rng),
            "optin": lambda: self.call("optin", self.client.opt_in(me.ref)),
            "memory read": lambda: self.call("memory read", self.client.memory(me.ref, me.chat_id)),
        }
        while self.running:
            if rng.random() < BAD_SHARE:
                name = rng.choice(list(BAD))
                method, path, kwargs = BAD[name](me.ref)
                await self.send(f"bad: {name}", method, path, **kwargs)
            else:
                name = rng.choices(list(VALID_WEIGHTS), weights=list(VALID_WEIGHTS.values()))[0]
                await valid[name]()
            await asyncio.sleep(rng.uniform(0, THINK_S))

    async def chat(self, me: SimUser, rng: random.Random, *, stream: bool) -> None:
        chat_id = me.next_chat_id()
        # the marker makes each message unique, so that the check at the end finds exactly this turn
        text = f"{rng.choice(QUESTIONS)} (#{me.ref.user_id}-{me.sent})"
        request = ChatRequest(
            platform=PLATFORM, user_id=me.ref.user_id, chat_id=chat_id, text=text, display_name="Soak"
        )
        reply = await self.call(
            "chat (streamed)" if stream else "chat",
            self._streamed(request) if stream else self.client.chat(request),
        )
        if reply is not None:
            self.acked.append(Acked(me.ref.user_id, chat_id, text, reply.reply, reply.logged))

    async def _streamed(self, request: ChatRequest) -> ChatReply:
        async with aclosing(self.client.chat_stream(request)) as pieces:
            async for piece in pieces:
                if isinstance(piece, ChatReply):
                    return piece
        raise BrainUnavailable(0, "incomplete", "the stream ended without its reply")

    async def completion(self, rng: random.Random, *, stream: bool) -> None:
        body = {"messages": [{"role": "user", "content": rng.choice(QUESTIONS)}], "max_tokens": 16, "stream": stream}
        category = "chat completions (streamed)" if stream else "chat completions"
        await self.send(category, "POST", "/v1/chat/completions", stream=stream, json=body)

    async def persona(self, me: SimUser, rng: random.Random) -> None:
        choice: dict[str, Any] = rng.choice([{"preset": rng.choice(self.presets)}, *VALID_PERSONAS])
        request = PersonaSet(platform=PLATFORM, user_id=me.ref.user_id, chat_id=me.chat_id, **choice)
        await self.call("persona change", self.client.set_persona(request))

    async def call(self, category: str, action: Awaitable[T]) -> T | None:
        """A call through the typed client, counted; its result, or None when it failed."""
        started = self.clock()
        try:
            result = await action
        except BrainError as exc:
            self.record(category, started, exc.status, exc.code, exc.message)
            return None
        except ValueError as exc:  # a 200 whose body is not what the contract says
            self.record(category, started, 0, "invalid reply", str(exc))
            return None
        self.record(category, started, 200)
        return result

    async def send(self, category: str, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> None:
        """A raw request (malformed ones cannot go through the typed client), counted."""
        started = self.clock()
        try:
            if stream:
                async with self.http.stream(method, path, **kwargs) as response:
                    status, content = response.status_code, await response.aread()
            else:
                response = await self.http.request(method, path, **kwargs)
                status, content = response.status_code, response.content
        except httpx.HTTPError as exc:
            self.record(category, started, 0, type(exc).__name__, str(exc))
            return
        code, message = _error_of(content)
        if status == 200 and stream:
            status, code, message = _stream_outcome(content)
        self.record(category, started, status, code, message)

    def record(self, category: str, started: float, status: int, code: str = "", message: str = "") -> None:
        ended = self.clock()
        tally = self.tallies.setdefault(category, Tally())
        tally.requests += 1
        if 200 <= status < 300:
            tally.ok += 1
            tally.latencies.append(ended - started)
            return
        expected = status == 503 and (
            code == "busy" or (code in STORAGE_CODES and any(o.covers(started, ended) for o in self.outages))
        )
        if status == 0:
            tally.no_answer += 1
        elif status < 500:
            tally.refused += 1
        elif expected:
            tally.expected_503 += 1
        else:
            tally.server_errors += 1
        key = f"{status or 'no answer'} {code}".strip() + (" (expected)" if expected else "")
        tally.answers[key] += 1
        tally.examples.setdefault(key, message[:300])
        if len(times := tally.times.setdefault(key, [])) < 10:
            times.append(round(started, 1))

    async def verify(self) -> list[dict[str, Any]]:
        """Every acknowledged turn, looked up in Redis through the API: in its chat's memory and, when the
        reply said logged, in the user's training log."""
        checker = BrainClient(self.brain.url, self.brain.api_key, timeout=REQUEST_TIMEOUT_S, retries=5)
        lost: list[dict[str, Any]] = []
        try:
            for (user_id, chat_id), turns in _group(self.acked, lambda t: (t.user_id, t.chat_id)).items():
                ref = UserRef(platform=PLATFORM, user_id=user_id)
                try:
                    view = (await checker.memory(ref, chat_id)).turns
                except BrainError as exc:
                    lost += [_lost(turn, "memory", f"unreadable: {exc}") for turn in turns]
                    continue
                stored = {(a.text, b.text) for a, b in pairwise(view) if (a.role, b.role) == ("user", "assistant")}
                lost += [_lost(turn, "memory", "missing") for turn in turns if (turn.text, turn.reply) not in stored]
            logged = [turn for turn in self.acked if turn.logged]
            for user_id, turns in _group(logged, lambda t: t.user_id).items():
                try:
                    log = (await checker.export(UserRef(platform=PLATFORM, user_id=user_id))).log
                except BrainError as exc:
                    lost += [_lost(turn, "log", f"unreadable: {exc}") for turn in turns]
                    continue
                entries = {(entry.user_text, entry.reply) for entry in log}
                lost += [_lost(turn, "log", "missing") for turn in turns if (turn.text, turn.reply) not in entries]
        finally:
            await checker.aclose()
        return lost

    def summary(self, load_s: float, lost: list[dict[str, Any]]) -> dict[str, Any]:
        valid = {name: self.tallies[name] for name in VALID_WEIGHTS if name in self.tallies}
        bad = {f"bad: {name}": self.tallies[f"bad: {name}"] for name in BAD if f"bad: {name}" in self.tallies}
        chats = [s for name in ("chat", "chat (streamed)") if name in valid for s in valid[name].latencies]
        warm_at = self.args.duration * WARMUP_SHARE
        after_warmup = [mib for t, mib in self.rss if t >= warm_at]
        rss_warm = after_warmup[0] if after_warmup else float("nan")
        rss_end = self.rss[-1][1] if self.rss else float("nan")
        bad_failures = sum(t.server_errors + t.no_answer for t in bad.values())
        valid_failures = sum(t.server_errors + t.no_answer for t in valid.values())
        bars = {
            "server errors from bad input": _bar(bad_failures, "0", bad_failures == 0),
            "server errors on valid requests (outside outages)": _bar(valid_failures, "0", valid_failures == 0),
            "acknowledged turns lost": _bar(len(lost), "0", not lost),
            "RSS end / warm-up end": _bar(round(rss_end / rss_warm, 4), f"<= {RSS_BAR}", rss_end / rss_warm <= RSS_BAR),
        }
        return {
            "duration_s": self.args.duration,
            "load_s": round(load_s, 1),
            "users": self.args.users,
            "seed": self.args.seed,
            "model": self.args.model or "small random llama (2 layers, 64 wide)",
            "prefix_cache_mib": self.args.prefix_cache_mib,
            "redis_restarts": [
                {"killed_at_s": round(o.killed, 1), "ready_at_s": o.back and round(o.back, 1)} for o in self.outages
            ],
            "brain_exited": self.brain_died,
            "requests": sum(t.requests for t in self.tallies.values()),
            "acknowledged_turns": len(self.acked),
            "logged_turns": sum(turn.logged for turn in self.acked),
            "lost_turns": lost[:50],
            "valid_chat_latency_s": _quantiles(chats),
            "rss_mib": {
                "warmup_end": rss_warm,
                "end": rss_end,
                "ratio": round(rss_end / rss_warm, 4),
                "peak_after_warmup": max(after_warmup, default=float("nan")),
                "samples": self.rss,
            },
            "bars": bars,
            "ok": all(bar["ok"] for bar in bars.values()),
            "categories": {name: _tally_json(tally) for name, tally in {**valid, **bad}.items()},
        }


def _bar(value: float, bar: str, ok: bool) -> dict[str, Any]:
    return {"value": value, "bar": bar, "ok": ok}


def _error_of(content: bytes) -> tuple[str, str]:
    try:
        error = json.loads(content)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "", content[:300].decode(errors="replace")


def _stream_outcome(content: bytes) -> tuple[int, str, str]:
    """A streamed 200 answer that reports an error in an event, or stops before [DONE], failed after all."""
    for line in content.decode(errors="replace").splitlines():
        if line.startswith("data:") and '"error"' in line:
            code, message = _error_of(line[5:].encode())
            return (503 if code in STORAGE_CODES | {"busy"} else 500), code, message
    if b"data: [DONE]" not in content:
        return 0, "incomplete", "the stream stopped before [DONE]"
    return 200, "", ""


def _group(turns: list[Acked], key: Callable[[Acked], Any]) -> dict[Any, list[Acked]]:
    groups: dict[Any, list[Acked]] = {}
    for turn in turns:
        groups.setdefault(key(turn), []).append(turn)
    return groups


def _lost(turn: Acked, where: str, why: str) -> dict[str, Any]:
    return {"user": turn.user_id, "chat": turn.chat_id, "text": turn.text, "where": where, "why": why}


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)

    return {"p50": at(0.5), "p95": at(0.95)}


def _tally_json(tally: Tally) -> dict[str, Any]:
    return {
        "requests": tally.requests,
        "2xx": tally.ok,
        "4xx": tally.refused,
        "5xx": tally.server_errors,
        "503_expected": tally.expected_503,
        "no_answer": tally.no_answer,
        "latency_s": _quantiles(tally.latencies),
        "answers": {
            key: {"count": n, "example": tally.examples[key], "sent_at_s": tally.times[key]}
            for key, n in tally.answers.most_common()
        },
    }


# reporting


def print_tables(console: Console, result: dict[str, Any]) -> None:
    table = Table(
        title=f"Soak: {result['users']} users, {result['load_s']:.0f} s, {len(result['redis_restarts'])} Redis kills"
    )
    table.add_column("category")
    for column in ("requests", "2xx", "4xx", "5xx", "503 Redis\ndown/busy", "no\nanswer", "p50 s", "p95 s"):
        table.add_column(column, justify="right")
    for name, row in result["categories"].items():

        def flag(n: int) -> str:
            return f"[bold red]{n}[/]" if n else "0"

        latency = row["latency_s"]
        table.add_row(
            name,
            str(row["requests"]),
            str(row["2xx"]),
            str(row["4xx"]),
            flag(row["5xx"]),
            str(row["503_expected"]),
            flag(row["no_answer"]),
            "-" if latency["p50"] is None else f"{latency['p50']:.2f}",
            "-" if latency["p95"] is None else f"{latency['p95']:.2f}",
        )
    console.print(table)

    failures = Table(title="Server errors and missing answers, by category")
    for column in ("category", "answer", "count", "first sent at s", "example"):
        failures.add_column(column)
    for name, row in result["categories"].items():
        for key, answer in row["answers"].items():
            if key.startswith(("5", "no answer")) and not key.endswith("(expected)"):
                times = ", ".join(map(str, answer["sent_at_s"][:4]))
                failures.add_row(name, key, str(answer["count"]), times, answer["example"][:70])
    if failures.row_count:
        console.print(failures)
    if result.get("brain_exceptions"):
        logged = Table(title="Exceptions in the brain's log")
        logged.add_column("count", justify="right")
        logged.add_column("exception")
        for item in result["brain_exceptions"]:
            logged.add_row(str(item["count"]), item["exception"][:110])
        console.print(logged)

    bars = Table(title="Figures and bars")
    for column in ("figure", "value", "bar", "ok"):
        bars.add_column(column)
    rss, latency = result["rss_mib"], result["valid_chat_latency_s"]
    bars.add_row("requests", f"{result['requests']} ({result['requests'] / max(result['load_s'], 1):.1f}/s)", "", "")
    bars.add_row("valid chats p50 / p95 s", f"{latency['p50']} / {latency['p95']}", "", "")
    bars.add_row("acknowledged turns (logged)", f"{result['acknowledged_turns']} ({result['logged_turns']})", "", "")
    for restart in result["redis_restarts"]:
        bars.add_row("Redis killed at / ready at s", f"{restart['killed_at_s']} / {restart['ready_at_s']}", "", "")
    bars.add_row("RSS warm-up end / end / peak MiB", f"{rss['warmup_end']} / {rss['end']} / {rss['peak_after_warmup']}")
    for name, bar in result["bars"].items():
        bars.add_row(name, str(bar["value"]), bar["bar"], "[green]yes[/]" if bar["ok"] else "[bold red]NO[/]")
    console.print(bars)


def plot_rss(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["rss_mib"]["samples"]
    figure, axes = plt.subplots(figsize=(7, 3.2))
    axes.plot([t for t, _ in samples], [mib for _, mib in samples], color="tab:blue", label="brain RSS")
    axes.axvline(result["duration_s"] * WARMUP_SHARE, color="grey", linestyle="--", label="warm-up end")
    for number, restart in enumerate(result["redis_restarts"]):
        end = restart["ready_at_s"] or restart["killed_at_s"]
        axes.axvspan(
            restart["killed_at_s"], end, color="tab:red", alpha=0.2, label="Redis down" if not number else None
        )
    axes.set_xlabel("seconds")
    axes.set_ylabel("MiB")
    axes.set_title(f"Brain resident memory, {result['users']} users (end/warm-up {result['rss_mib']['ratio']:.3f})")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--redis-restarts", type=int, default=2, help="times Redis is killed (-9) and restarted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="model to serve (default: a small random one)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    parser.add_argument(
        "--prefix-cache-mib", type=int, default=64, help="model.prefix_cache_mib of the brain (its default is 1024)"
    )
    args = parser.parse_args()

    console = Console(width=140)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        model = args.model or str(build_small_model(work / "model", args.seed))
        server = LocalRedis(work / "redis")
        start_redis(server)
        brain = None
        try:
            brain = BrainProcess(
                work, server.url, model, small_model=args.model is None, prefix_cache_mib=args.prefix_cache_mib
            )
            brain.wait_ready(600)
            console.print(f"brain ready at {brain.url}; {args.users} users for {args.duration:.0f} s")
            result = asyncio.run(Soak(args, brain, server).run())
        finally:
            if brain is not None:
                brain.stop()
            server.stop()
        result["brain_exceptions"] = brain.exceptions()
    result |= {"cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}

    print_tables(console, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    plot_rss(result, args.out.with_suffix(".png"))
    console.print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
