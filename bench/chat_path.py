"""The path members use: N members each send several messages in turn through ``/v1/chat``, waiting for each reply.

The brain runs with the shipped settings (memory window, summary folds, fact extraction, the default persona
and its sampling) and streams every reply; the other paths get the same system prompt and sampling. Beside
it, the same conversations go:

- to ``/v1/chat`` of a second brain with memory off (``nomemory``: the window alone, no recall, no summary, no
  fact extraction), which the shipped settings must stay close to in CPU per message and time to first token;
- to the brain's stateless OpenAI route (``/v1/chat/completions``), the client keeping the whole history;
- to llama.cpp's ``llama-server`` on the same GGUF (found as bench/serve_http.py finds it), the client keeping
  the whole history, with a slot per member and enough context for each.

Each figure: time to the first streamed token (p50, p95), replies per minute, reply tokens per second, and
CPU seconds per message of the server process, background work included (read from /proc after the server
has gone idle again, so a summary fold that runs after the last reply counts), with the load average before
and after the run beside it: on a busy machine every figure is slower, and llama.cpp's spinning threads far
more than the brain, so compare figures only from a quiet machine. Run from the repository root:

    python -m bench.chat_path                                   # 1, 4, 16 and 32 members, six messages each
    nice python -m bench.chat_path --members 1,2 --messages 2   # a smoke run
    python -m bench.chat_path --memory-turns 24                 # the same with no summary folded in six messages
    python -m bench.chat_path --members 16 --modes chat,nomemory --rounds 3   # paths in turn, medians

Prints a table and writes bench/results/chat_path.json (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.serve_http import (
    TOPICS,
    Server,
    find_llama_server,
    fresh_connections,
    gguf_path,
    start_brain,
    start_llama,
    stream_chat_completion,
)
from bench.soak import start_redis
from brain.api_models import SamplingParams
from brain.engine.model_loading import DEFAULT_MODEL_GGUF
from brain.personas import load_presets
from brain.redis_local import LocalRedis
from brain.settings import BrainSettings, ModelSettings

RESULTS = Path(__file__).parent / "results" / "chat_path.json"
MODES = ("chat", "nomemory", "openai", "llama.cpp")
PATHS = {"chat": "/v1/chat", "nomemory": "/v1/chat, memory off", "openai": "OpenAI route", "llama.cpp": "llama.cpp"}
# memory off: what the window alone costs; the shipped settings are measured against it
MEMORY_OFF = {"recall_tokens": 0, "summaries": False, "extract_facts": False}


@dataclass
class Reply:
    ttft_s: float
    seconds: float
    tokens: int


@dataclass
class Figures:
    mode: str
    members: int
    round: int  # paths take turns, round after round: a slow spell of the machine falls on each alike
    messages: int  # replies in all
    ttft_p50_s: float
    ttft_p95_s: float
    replies_per_min: float
    reply_tokens_per_s: float
    cpu_s_per_message: float  # the server process's CPU time (every thread), background work included
    wall_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def message(member: int, turn: int) -> str:
    """Every other message tells about a new topic; the ones between come back to the member's first topic, as
    members do, so that recall has something to find once it has left the window (from the fourth message on)."""
    if turn % 2:
        first = TOPICS[member % len(TOPICS)]
        return f"Back to {first}: what would you do first?"
    topic = TOPICS[(member + turn) % len(TOPICS)]
    return f"Let me tell you about {topic}. What do you think of it?"


def cpu_seconds(pid: int) -> float:
    """User and system time of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settle(pid: int, timeout_s: float = 300) -> None:
    """Wait until the process stops using CPU (its background work done)."""
    deadline = time.monotonic() + timeout_s
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = cpu_seconds(pid)
        if now - last < 0.03:
            return
        last = now


async def chat_turn(client: httpx.AsyncClient, server: Server, user: str, text: str) -> Reply:
    body = {"platform": "telegram", "user_id": user, "chat_id": "bench", "text": text, "stream": True}
    started, first, tokens, event = time.perf_counter(), None, 0, ""
    async with client.stream("POST", server.url + "/v1/chat", json=body, headers=server.headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"/v1/chat answered {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "delta":
                    first = first or time.perf_counter()
                elif event == "done":
                    tokens = json.loads(line[6:])["tokens"]
                elif event == "error":
                    raise RuntimeError(f"/v1/chat failed mid-reply: {line[6:300]}")
    ended = time.perf_counter()
    return Reply((first or ended) - started, ended - started, tokens)


async def openai_turn(
    client: httpx.AsyncClient, server: Server, messages: list[dict], sampling: SamplingParams, seed: int
) -> Reply:
    body: dict = {
        "model": "default",
        "messages": messages,
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # the same penalty under each server's own name for it
    body["repeat_penalty" if server.name == "llama.cpp" else "repetition_penalty"] = sampling.repetition_penalty
    streamed = await stream_chat_completion(client, server, body)
    messages.append({"role": "assistant", "content": streamed.text.strip()})
    return Reply(streamed.first_s, streamed.total_s, streamed.usage.get("completion_tokens", streamed.pieces))


@dataclass(frozen=True)
class Persona:
    system_prompt: str
    sampling: SamplingParams


def shipped_persona() -> Persona:
    """The default persona's system prompt and sampling, as /v1/chat uses them."""
    persona = load_presets()[BrainSettings().default_persona]
    return Persona(persona.system_prompt, persona.sampling)


async def member(
    client: httpx.AsyncClient, server: Server, mode: str, run: str, index: int, count: int, persona: Persona
) -> list[Reply]:
    """One member's messages, each sent once the reply to the one before has ended."""
    replies = []
    history = [{"role": "system", "content": persona.system_prompt}]
    for turn in range(count):
        text = message(index, turn)
        if mode in ("chat", "nomemory"):
            replies.append(await chat_turn(client, server, f"{run}-{index}", text))
        else:
            history.append({"role": "user", "content": text})
            replies.append(await openai_turn(client, server, history, persona.sampling, seed=index * 1000 + turn))
    return replies


async def measure(server: Server, mode: str, members: int, count: int, persona: Persona, round_: int) -> Figures:
    assert server.process is not None
    pid = server.process.pid
    limits = fresh_connections(members + 8)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        await settle(pid)
        load_before, cpu_before, started = os.getloadavg(), cpu_seconds(pid), time.perf_counter()
        run = f"m{members}-{time.time_ns()}"  # new members each run: nothing remembered from another
        replies = [
            reply
            for own in await asyncio.gather(
                *(member(client, server, mode, run, index, count, persona) for index in range(members))
            )
            for reply in own
        ]
        wall = time.perf_counter() - started
        await settle(pid)
        cpu = cpu_seconds(pid) - cpu_before
    ttfts = sorted(reply.ttft_s for reply in replies)
    return Figures(
        mode=mode,
        members=members,
        round=round_,
        messages=len(replies),
        ttft_p50_s=statistics.median(ttfts),
        ttft_p95_s=ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
        replies_per_min=len(replies) / wall * 60,
        reply_tokens_per_s=sum(reply.tokens for reply in replies) / wall,
        cpu_s_per_message=cpu / len(replies),
        wall_s=wall,
        load_before=load_before,
        load_after=os.getloadavg(),
    )


async def warm_up(servers: dict[str, Server], persona: Persona) -> None:
    """First requests pay one-off costs (compiling, allocating): not part of any figure."""
    async with httpx.AsyncClient(timeout=900) as client:
        for mode, server in servers.items():
            await member(client, server, mode, f"warm-{mode}", 0, 1, persona)


def medians(figures: list[Figures]) -> list[Figures]:
    """One row per number of members and path: the median of each figure over its rounds (round -1), the load
    average the lowest and highest seen."""
    rows = []
    for key in dict.fromkeys((row.members, row.mode) for row in figures):
        runs = [row for row in figures if (row.members, row.mode) == key]
        middle = {
            name: statistics.median(getattr(row, name) for row in runs)
            for name in ("ttft_p50_s", "ttft_p95_s", "replies_per_min", "reply_tokens_per_s", "cpu_s_per_message")
        }
        rows.append(
            Figures(
                mode=key[1],
                members=key[0],
                round=-1,
                messages=sum(row.messages for row in runs),
                **middle,
                wall_s=sum(row.wall_s for row in runs),
                load_before=min(row.load_before for row in runs),
                load_after=max(row.load_after for row in runs),
            )  # fmt: skip
        )
    return rows


def print_table(console: Console, figures: list[Figures], title: str) -> None:
    table = Table(title=f"{title}: TTFT, rate and CPU per message (load average beside)")
    for column in ("members", "path", "round", "TTFT p50 s", "TTFT p95 s", "replies/min", "reply tok/s", "CPU s/msg"):
        table.add_column(column, justify="right")
    table.add_column("load", justify="right")
    for row in figures:
        table.add_row(
            str(row.members),
            {
                "chat": "/v1/chat",
                "nomemory": "/v1/chat, memory off",
                "openai": "OpenAI route",
                "llama.cpp": "llama.cpp",
            }[row.mode],
            "median" if row.round < 0 else str(row.round + 1),
            f"{row.ttft_p50_s:.3f}",
            f"{row.ttft_p95_s:.3f}",
            f"{row.replies_per_min:.1f}",
            f"{row.reply_tokens_per_s:.1f}",
            f"{row.cpu_s_per_message:.2f}",
            f"{row.load_before[0]:.1f}-{row.load_after[0]:.1f}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="1,4,16,32", help="comma-separated numbers of members")
    parser.add_argument("--messages", type=int, default=6, help="messages each member sends, one after another")
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    parser.add_argument("--memory-turns", type=int, help="memory.max_turns instead of the shipped one")
    parser.add_argument("--rounds", type=int, default=1, help="paths measured in turn this many times (medians)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of each server")
    parser.add_argument("--llama-server", help="the llama-server binary (else $OWNCHAT_LLAMA_SERVER or the cache)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    counts = [int(members) for members in args.members.split(",")]
    modes = [mode for mode in args.modes.split(",") if mode]
    console = Console(width=130)
    binary = find_llama_server(args.llama_server) if "llama.cpp" in modes else None
    if binary is None and "llama.cpp" in modes:
        modes.remove("llama.cpp")
        console.print("[bold]No llama-server was found: the brain is measured without its peer.")
    persona = shipped_persona()
    window = {"max_turns": args.memory_turns} if args.memory_turns else {}
    figures: list[Figures] = []
    failures: dict[str, str] = {}  # a path that failed, and why: not measured again at more members
    with tempfile.TemporaryDirectory(prefix="ownchat-bench-") as tmp:
        work = Path(tmp)
        redis_server = LocalRedis(work / "redis")
        start_redis(redis_server)
        servers: dict[str, Server] = {}
        try:
            if {"chat", "openai"} & set(modes):  # a brain started for no path would be left running
                brain = start_brain(work, redis_server.url, args.threads, {"memory": window})
                servers |= {mode: brain for mode in modes if mode in ("chat", "openai")}
            if "nomemory" in modes:
                (work / "nomemory").mkdir()
                overrides = {"memory": window | MEMORY_OFF}
                servers["nomemory"] = start_brain(work / "nomemory", redis_server.url, args.threads, overrides)
            if binary is not None:
                gguf_path()  # says clearly when the GGUF package is missing
                # a slot per member, each with the brain's whole context: the client's history keeps growing
                servers["llama.cpp"] = start_llama(
                    binary, work, args.threads, slots=max(counts), slot_context=ModelSettings().context_tokens
                )
            asyncio.run(warm_up(servers, persona))
            for members in counts:
                # one path after the other on the same members' conversations, round after round
                for round_, mode in ((r, mode) for r in range(args.rounds) for mode in modes):
                    if mode in failures:
                        continue
                    console.log(f"{members} members, {args.messages} messages each, {mode}, round {round_ + 1}")
                    try:
                        run = measure(servers[mode], mode, members, args.messages, persona, round_)
                        figures.append(asyncio.run(run))
                    except (httpx.HTTPError, RuntimeError) as error:  # the other paths' figures still count
                        failures[mode] = failure(servers[mode], work, members, error)
                        console.print(f"[red]{mode} failed at {members} members: {failures[mode]}")
                    write_results(args, figures, failures, persona, binary)
        finally:
            for server in {id(server): server for server in servers.values()}.values():
                server.stop()
            redis_server.stop()
    print_table(console, figures, "Members in turn, shipped settings")
    if args.rounds > 1:
        print_table(console, medians(figures), f"Medians over {args.rounds} rounds")
    write_results(args, figures, failures, persona, binary)
    console.print(f"wrote {args.out}")


def failure(server: Server, work: Path, members: int, error: Exception) -> str:
    """Why a path stopped: the error, whether its server is still up, and the end of its log."""
    log = work / ("llama.log" if server.name == "llama.cpp" else "brain.log")
    exited = server.process.poll() if server.process is not None else None
    tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else []
    state = f"the server exited with {exited}" if exited is not None else "the server is still up"
    return f"{members} members: {type(error).__name__}: {error}; {state}; its log ends: {' | '.join(tail)}"


def write_results(
    args: argparse.Namespace, figures: list[Figures], failures: dict[str, str], persona: Persona, binary: Path | None
) -> None:
    """What has been measured so far (written after every path, so that a failure keeps the rest)."""
    result = {
        "figures": [asdict(row) for row in figures],
        "medians": [asdict(row) for row in medians(figures)],
        "rounds": args.rounds,
        "failures": failures,
        "messages_per_member": args.messages,
        "memory_turns": args.memory_turns,
        "memory_off": MEMORY_OFF,
        "sampling": persona.sampling.model_dump(),
        "peer": str(binary) if binary else None,
        "gguf": DEFAULT_MODEL_GGUF,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
