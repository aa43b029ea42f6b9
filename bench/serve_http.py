"""Serving end to end over HTTP: the brain beside llama.cpp's own server on the same GGUF file.

Both servers get the same OpenAI chat requests (streamed, greedy, the same reply budget) from the same
client, one workload after the other, in one run:

- N users (1, 4, 16, 32) each send one message at the same moment: aggregate decode throughput
  (completion tokens over wall time, each server's own count) and time to the first streamed token;
- one member's long conversation (``--turns`` messages, each prompt the whole conversation so far with
  the server's own earlier replies): the time to the first token of every message, the last one's
  prompt being about 1,100 tokens.

The brain runs as an operator runs it (``brain serve``, a real redis-server, the default settings but
for the rate limit); llama.cpp's ``llama-server`` with continuous batching and 32 slots, found through
``--llama-server``, ``$OWNCHAT_LLAMA_SERVER`` or ``~/.cache/ownchat/llama.cpp/`` (build it from the
``llama-cpp-python`` source distribution's vendored llama.cpp: ``cmake --build build --target
llama-server``). Without one the brain is measured alone and the run says so. Run from the repository root:

    python -m bench.serve_http                         # users 1,4,16,32 and a 20-message conversation
    python -m bench.serve_http --users 1,16 --rounds 1 --turns 8     # a quick look

Prints a table of medians and ratios and writes bench/results/serve_http.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from bench.serve import PERSONAS, QUESTIONS
from bench.soak import start_redis
from brain.engine.model_loading import DEFAULT_MODEL_GGUF, DEFAULT_MODEL_PACKAGE
from brain.redis_local import LocalRedis, free_port

RESULTS = Path(__file__).parent / "results" / "serve_http.json"
LLAMA_CACHE = Path("~/.cache/ownchat/llama.cpp").expanduser()
TOPICS = [
    "my garden", "the trip to the coast", "learning the guitar", "our book club", "the new puppy",
    "cooking for friends", "the marathon plan", "fixing the old bike", "the chess club", "painting the kitchen",
]  # fmt: skip


@dataclass
class Reply:
    text: str
    tokens: int
    ttft_s: float
    seconds: float
    prompt_tokens: int = 0


@dataclass
class Server:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def gguf_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise SystemExit(f"the {DEFAULT_MODEL_PACKAGE} package (the default model's GGUF) is not installed")
    return Path(spec.origin).parent / DEFAULT_MODEL_GGUF


def find_llama_server(option: str | None) -> Path | None:
    for candidate in (option, os.environ.get("OWNCHAT_LLAMA_SERVER")):
        if candidate:
            return Path(candidate).expanduser()
    for built in (LLAMA_CACHE / "llama-server", LLAMA_CACHE / "bin" / "llama-server"):
        if built.is_file():
            return built
    found = shutil.which("llama-server")
    return Path(found) if found else None


def start_brain(work: Path, redis_url: str, threads: int, overrides: dict | None = None) -> Server:
    """``overrides``: settings sections to change from the shipped ones, e.g. ``{"memory": {"max_turns": 24}}``."""
    port, key = free_port(), secrets.token_urlsafe(24)
    config: dict = {
        "redis": {"url": redis_url},
        "model": {"max_new_tokens": 256},
        "limits": {"rate_per_minute": 100_000},  # the bench measures speed, not the per-user rate limiter
        "trainer": {"registry_dir": str(work / "registry"), "runs_dir": str(work / "runs")},
    }
    for section, fields in (overrides or {}).items():
        config.setdefault(section, {}).update(fields)
    (work / "ownchat.yaml").write_text(yaml.safe_dump(config))
    env = {name: value for name, value in os.environ.items() if not name.startswith("OWNCHAT_")}
    env |= {"OWNCHAT_CONFIG": str(work / "ownchat.yaml"), "OWNCHAT_API_KEY": key, "OMP_NUM_THREADS": str(threads)}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads collapse on shared cores
    log = (work / "brain.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "brain", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    server = Server("ownchat", f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}, process)
    wait_ready(server, "/readyz", work / "brain.log")
    return server


def start_llama(binary: Path, work: Path, threads: int, slots: int, slot_context: int = 2048) -> Server:
    port = free_port()
    log = (work / "llama.log").open("wb")
    command = [str(binary), "-m", str(gguf_path()), "--host", "127.0.0.1", "--port", str(port)]
    command += ["-np", str(slots), "-c", str(slots * slot_context), "-t", str(threads), "-cb", "--no-webui"]
    # this llama.cpp (llama-cpp-python 0.3.36's) crashes at start on AMX Xeons while repacking Q4_1 weights
    command += ["--no-repack"] if os.environ.get("OWNCHAT_LLAMA_REPACK") != "1" else []
    env = dict(os.environ)  # its shared libraries sit beside it in a build's bin folder
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(binary.parent), env.get("LD_LIBRARY_PATH")]))
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server("llama.cpp", f"http://127.0.0.1:{port}", {}, process)
    wait_ready(server, "/health", work / "llama.log")
    return server


def fresh_connections(connections: int) -> httpx.Limits:
    """A new connection for every request, on every server: llama-server (cpp-httplib) closes a kept-alive one
    after a few requests, and the next request sent on it fails ("Server disconnected without sending a
    response"); on localhost a connection costs well under a millisecond."""
    return httpx.Limits(max_connections=connections, max_keepalive_connections=0)


def wait_ready(server: Server, path: str, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited; its log:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{server.name} was not ready within {timeout_s:.0f} s")


async def ask(client: httpx.AsyncClient, server: Server, messages: list[dict], max_tokens: int) -> Reply:
    body = {
        "model": "default",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    streamed = await stream_chat_completion(client, server, body)
    return Reply(
        streamed.text,
        streamed.usage.get("completion_tokens", streamed.pieces),
        streamed.first_s,
        streamed.total_s,
        streamed.usage.get("prompt_tokens", 0),
    )


@dataclass
class Streamed:
    """One streamed chat completion as a client sees it."""

    text: str
    pieces: int  # content deltas received
    first_s: float  # seconds to the first content delta (the whole time if none came)
    total_s: float
    usage: dict


async def stream_chat_completion(client: httpx.AsyncClient, server: Server, body: dict) -> Streamed:
    """POST ``body`` to the server's streaming /v1/chat/completions and read it to the end."""
    started, first = time.perf_counter(), None
    pieces: list[str] = []
    usage: dict[str, Any] = {}
    async with client.stream("POST", server.url + "/v1/chat/completions", json=body, headers=server.headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{server.name} answered {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first or time.perf_counter()
                    pieces.append(text)
    ended = time.perf_counter()
    return Streamed("".join(pieces), len(pieces), (first or ended) - started, ended - started, usage)


def chat_messages(index: int) -> list[dict]:
    persona = PERSONAS[index % len(PERSONAS)]
    system = [{"role": "system", "content": persona}] if persona else []
    return system + [{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}]


async def users_round(client: httpx.AsyncClient, server: Server, users: int, max_tokens: int) -> dict:
    started = time.perf_counter()
    replies = await asyncio.gather(*(ask(client, server, chat_messages(index), max_tokens) for index in range(users)))
    seconds = time.perf_counter() - started
    return {
        "tokens_per_s": sum(reply.tokens for reply in replies) / seconds,
        "ttft_s": statistics.median(reply.ttft_s for reply in replies),
        "replies": [reply.text for reply in replies],
    }


async def conversation(client: httpx.AsyncClient, server: Server, turns: int, max_tokens: int) -> list[Reply]:
    """One member's chat: every message carries the whole conversation so far, as the brain's prompts do."""
    messages = [{"role": "system", "content": PERSONAS[1]}]
    replies = []
    for turn in range(turns):
        topic = TOPICS[turn % len(TOPICS)]
        messages.append({"role": "user", "content": f"Let me tell you about {topic}. What do you think of it?"})
        reply = await ask(client, server, messages, max_tokens)
        replies.append(reply)
        messages.append({"role": "assistant", "content": reply.text.strip()})
    return replies


async def measure(servers: list[Server], args: argparse.Namespace, console: Console) -> dict:
    limits = fresh_connections(64)
    result: dict = {"users": [], "conversation": {}}
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        for server in servers:  # warm up: first requests pay one-off costs
            await users_round(client, server, 2, 8)
        for users in args.users:
            rounds: dict[str, list[dict]] = {server.name: [] for server in servers}
            for number in range(args.rounds):  # interleaved, so that a busy machine slows both alike
                console.log(f"{users} users, round {number + 1}/{args.rounds}")
                for server in servers:
                    rounds[server.name].append(await users_round(client, server, users, args.max_new_tokens))
            result["users"].append(
                {
                    "users": users,
                    **{
                        name: {
                            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
                            "ttft_s": statistics.median(r["ttft_s"] for r in runs),
                        }
                        for name, runs in rounds.items()
                    },
                    "same_replies": _same(rounds, servers),
                }
            )
        for server in servers:
            console.log(f"{server.name}: a {args.turns}-message conversation")
            replies = await conversation(client, server, args.turns, args.conversation_tokens)
            result["conversation"][server.name] = {
                "ttft_s": [round(reply.ttft_s, 4) for reply in replies],
                "prompt_tokens": [reply.prompt_tokens for reply in replies],
            }
    return result


def _same(rounds: dict[str, list[dict]], servers: list[Server]) -> str | None:
    if len(servers) < 2:
        return None
    ours, theirs = (rounds[server.name][0]["replies"] for server in servers[:2])
    return f"{sum(a.strip() == b.strip() for a, b in zip(ours, theirs, strict=True))}/{len(ours)}"


def print_table(console: Console, result: dict) -> None:
    peer = "llama.cpp" if result["peer"] else None
    table = Table(title="Over HTTP, streamed, greedy: aggregate tokens/s and median time to first token (s)")
    columns = ["users", "ownchat tok/s"] + ([f"{peer} tok/s", "ratio"] if peer else [])
    columns += ["ownchat TTFT"] + ([f"{peer} TTFT"] if peer else []) + (["same replies"] if peer else [])
    for column in columns:
        table.add_column(column, justify="right")
    for row in result["users"]:
        ours = row["ownchat"]
        cells = [str(row["users"]), f"{ours['tokens_per_s']:.1f}"]
        if peer:
            cells += [f"{row[peer]['tokens_per_s']:.1f}", f"{ours['tokens_per_s'] / row[peer]['tokens_per_s']:.2f}x"]
        cells.append(f"{ours['ttft_s']:.3f}")
        if peer:
            cells += [f"{row[peer]['ttft_s']:.3f}", row["same_replies"]]
        table.add_row(*cells)
    console.print(table)
    talk = result["conversation"]
    table = Table(title="A long conversation: time to first token (s) by message")
    for column in ["message", "prompt tokens", "ownchat"] + ([peer, "ratio"] if peer else []):
        table.add_column(column, justify="right")
    count = len(talk["ownchat"]["ttft_s"])
    for turn in sorted({0, 1, count // 2, count - 1}):
        ours = talk["ownchat"]["ttft_s"][turn]
        cells = [str(turn + 1), str(talk["ownchat"]["prompt_tokens"][turn]), f"{ours:.3f}"]
        if peer:
            cells += [f"{talk[peer]['ttft_s'][turn]:.3f}", f"{ours / talk[peer]['ttft_s'][turn]:.2f}x"]
        table.add_row(*cells)
    console.print(table)
    if not peer:
        console.print("[bold]No llama-server was found: ownchat was measured alone, with no peer to compare.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1,4,16,32", help="comma-separated numbers of concurrent users")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--turns", type=int, default=20, help="messages of the long conversation")
    parser.add_argument("--conversation-tokens", type=int, default=48, help="reply budget in the conversation")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of each server")
    parser.add_argument("--llama-server", help="the llama-server binary (else $OWNCHAT_LLAMA_SERVER or the cache)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.users = [int(users) for users in args.users.split(",")]
    console = Console(width=120)
    binary = find_llama_server(args.llama_server)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="ownchat-bench-") as tmp:
        work = Path(tmp)
        redis_server = LocalRedis(work / "redis")
        start_redis(redis_server)
        try:
            servers.append(start_brain(work, redis_server.url, args.threads))
            if binary is not None:
                servers.append(start_llama(binary, work, args.threads, slots=max(32, max(args.users))))
            result = asyncio.run(measure(servers, args, console))
        finally:
            for server in servers:
                server.stop()
            redis_server.stop()
    result |= {
        "peer": str(binary) if binary else None,
        "gguf": DEFAULT_MODEL_GGUF,
        "max_new_tokens": args.max_new_tokens,
        "rounds": args.rounds,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
    }
    print_table(console, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
