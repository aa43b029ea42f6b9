"""Conversation benchmark: does the bot follow what was said a few exchanges back, beyond stated facts?

Each scripted member opens with one of three kinds of thing a conversation leans on later, then chats about other
things, and 2, 4 and 8 exchanges later refers back to it:
- what the member said (a list, a plan): "What was the third thing I said I'm packing?" -> "kayak";
- what the bot itself said: the member asks for suggestions, and later "Which one did you suggest first?" -> the
  reply must name the first suggestion the bot made (its first content word that the request did not hold);
- the topic: "I'm going to Japan next month." ... "What should I eat there?" -> a Japanese dish or Japan.
Scoring is automatic (a word list per reference). As in bench/recall.py, every reference sees the same conversation
(the member's keys are saved before it and put back after), the brain's own HTTP API serves every message, in this
process, with the default model and greedy replies.

Configurations (each memory mechanism on or off, with the model profile's DRY unless named):
- window:    the one-exchange window only (no recall, no summaries);
- retrieved: the window and recall of the member's earlier messages (the shipped settings);
- summaries: the shipped settings and a rolling summary folded every 2 turns;
- long:      a 24-turn window (a capable model's) with recall;
- nodry:     the shipped settings without DRY;
- before:    what was shipped before the model profiles: recall, a summary folded after every message, no DRY;
- llama_cpp: no brain: llama.cpp's ``llama-server`` on the default model's GGUF (found and started as
             bench/serve_http.py does it; ``-t 2`` unless ``--llama-threads``; a slot per member, each with the
             brain's whole context), fed the same member scripts through its OpenAI route, the client keeping the
             whole history and sending it with every message. The same system prompt (the default persona's),
             greedy with the persona's repetition penalty over the whole context, the same reply budget, no DRY
             (llama.cpp's reads the whole context, the profile's the reply alone); each reference is sent after
             the conversation so far and left out of the history afterwards. Skipped, and said so in the
             results, without a llama-server.
Beside each: CPU seconds per message (replies, references and background work) of this process for the brain's
configurations, of the llama-server process for llama_cpp, with the load average at the end of the run.

    python -m bench.conversation                                 # every configuration, 21 members
    python -m bench.conversation --configs window,retrieved --members 2    # a quick look
    python -m bench.conversation --configs window,llama_cpp --members 1    # the brain beside llama.cpp, a smoke run
    python -m bench.conversation --rescore                       # the stored replies scored again

Prints each configuration's figures and writes bench/results/conversation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.chat_path import cpu_seconds, settle
from bench.recall import API_KEY, PLATFORM, Bench
from bench.serve_http import Server, find_llama_server, fresh_connections, start_llama, stream_chat_completion
from brain.api_models import ChatReply, ChatRequest, Persona
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS, DEFAULT_MODEL_GGUF
from brain.memory.recall import terms
from brain.memory.settings import MemorySettings
from brain.personas import load_presets
from brain.redis_local import LocalRedis
from brain.service.runtime import Runtime
from brain.settings import ModelSettings, Secrets, Settings
from trainer.nightly.stats import wilson

RESULTS = Path(__file__).parent / "results" / "conversation.json"
GAPS = (2, 4, 8)
GREEDY = {"temperature": 0.0, "max_new_tokens": 64}
LLAMA_CPP = "llama_cpp"  # the configuration with no brain: llama.cpp's server, the client keeping the history
# words of a reply that name no suggestion ("Sure! Here are three names: ...")
GENERIC = frozenset(terms("sure here are some great ideas idea suggestions suggest names name books book title first "
                          "second third one two three of course certainly happy help"))  # fmt: skip


@dataclass(frozen=True)
class Reference:
    kind: str  # "member", "bot" or "topic"
    opening: str
    question: str
    expected: tuple[str, ...] = ()  # any of these words in the reply (lower case); empty: the bot's first suggestion


SCRIPTS: list[Reference] = [  # the kinds take turns, so that a few members cover all three
    Reference("member", "For my camping trip I'm packing a tent, a stove and a kayak.",
              "What was the third thing I said I'm packing?", ("kayak",)),
    Reference("bot", "Can you suggest three names for my new goldfish?", "Which name did you suggest first?"),
    Reference("topic", "I'm going to Japan next month.", "What should I eat there?",
              ("japan", "sushi", "ramen", "tempura", "udon", "soba", "miso", "sashimi", "yakitori", "onigiri",
               "okonomiyaki", "takoyaki", "matcha", "tokyo", "kyoto", "osaka", "bento", "teriyaki")),
    Reference("member", "My plan for Saturday: first the market, then the museum, then dinner at Rosa's.",
              "Where am I going after the museum on Saturday?", ("rosa",)),
    Reference("bot", "Suggest two books for a long train ride.", "Which book did you suggest first?"),
    Reference("topic", "I just adopted a puppy!", "How often should I walk it?", ("puppy", "dog")),
    Reference("member", "My shopping list is eggs, flour and blueberries.",
              "What fruit was on my shopping list?", ("blueberr",)),
    Reference("bot", "Suggest three names for a black cat.", "Which name did you suggest first?"),
    Reference("topic", "I'm visiting Italy in the spring.", "What should I eat there?",
              ("ital", "pizza", "pasta", "gelato", "risotto", "lasagn", "espresso", "rome", "florence", "venice",
               "milan", "naples", "tiramisu", "spaghetti", "carbonara", "focaccia", "mozzarella")),
    Reference("member", "My three favourite films are Alien, Heat and Casablanca.",
              "Which film did I name last?", ("casablanca",)),
    Reference("bot", "Can you suggest two board games for a family night?", "Which game did you suggest first?"),
    Reference("topic", "I started learning the guitar last week.", "How long should I practise each day?",
              ("guitar", "chord", "strum", "fret")),
    Reference("member", "Today I need to call the dentist, the bank and my sister.",
              "Who is the last one I said I need to call?", ("sister",)),
    Reference("bot", "Suggest three houseplants that are easy to care for.", "Which plant did you suggest first?"),
    Reference("topic", "I'm training for my first marathon.", "What should I eat the night before?",
              ("marathon", "race day", "running", "runner", "carb")),
    Reference("member", "For the party I'm bringing lemonade, crisps and a chocolate cake.",
              "What dessert am I bringing to the party?", ("cake",)),
    Reference("bot", "Give me two ideas for a quick vegetarian dinner.", "Which dinner idea did you suggest first?"),
    Reference("topic", "My grandmother turns ninety on Sunday.", "What gift could I get her?",
              ("grandm", "ninet", "90", "birthday")),
    Reference("member", "I get to work by train to Leeds and then a bus.",
              "How do I get to work after the train?", ("bus",)),
    Reference("bot", "Suggest three names for a bakery.", "Which name did you suggest first?"),
    Reference("topic", "I'm moving to Canada in the autumn.", "What clothes should I pack?",
              ("canad", "winter", "snow", "cold")),
]  # fmt: skip
FILLER = [
    "Why is the sky blue?",
    "How do I make pancakes?",
    "Tell me a fun fact about octopuses.",
    "What is photosynthesis?",
    "How can I sleep better at night?",
    "What music is good for relaxing?",
    "How many planets are in the solar system?",
    "Explain what a volcano is.",
]


@dataclass
class Config:
    name: str
    memory: dict[str, Any]
    dry: bool = True


def configs() -> dict[str, Config]:
    recall = MemorySettings().recall_tokens
    return {
        "window": Config("window", {"recall_tokens": 0, "summaries": False}),
        "retrieved": Config("retrieved", {"recall_tokens": recall, "summaries": False}),
        "summaries": Config("summaries", {"recall_tokens": recall, "summaries": True, "fold_every_turns": 2}),
        "long": Config("long", {"recall_tokens": recall, "summaries": False, "max_turns": 24, "max_tokens": 1536}),
        "nodry": Config("nodry", {"recall_tokens": recall, "summaries": False}, dry=False),
        # what was shipped before model profiles: a summary folded after every message, no DRY
        "before": Config("before", {"recall_tokens": recall, "summaries": True, "fold_every_turns": 1}, dry=False),
    }


@dataclass
class Member:
    index: int
    script: Reference
    opening_reply: str = ""
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return f"c{self.index}"

    @property
    def user(self) -> str:
        return f"{PLATFORM}:{self.user_id}"

    def request(self, text: str) -> ChatRequest:
        return ChatRequest(
            platform=PLATFORM, user_id=self.user_id, chat_id=f"dm{self.index}", text=text, sampling=GREEDY
        )

    def expected(self) -> tuple[str, ...]:
        if self.script.expected:
            return self.script.expected
        # the first thing the bot suggested: its first bold or numbered item, else its first content word
        reply = self.opening_reply
        item = re.search(r"\*\*([^*]+)\*\*", reply) or re.search(r"^\s*1[.)]\s*(.+)$", reply, re.MULTILINE)
        asked = set(terms(self.script.opening)) | set(terms(self.script.question)) | GENERIC
        said = [word for word in terms(item.group(1) if item else reply) if word not in asked]
        return tuple(said[:1])


def new_members(count: int) -> list[Member]:
    return [Member(i, SCRIPTS[i % len(SCRIPTS)]) for i in range(count)]


# a member's message to its reply: Chat.say keeps the exchange in the conversation, Chat.refer leaves it out
Say = Callable[[Member, str], Awaitable[str]]


@dataclass(frozen=True)
class Chat:
    """How one configuration answers: every configuration runs the same script through these."""

    say: Say
    refer: Say
    settle: Callable[[], Awaitable[None]]  # wait until the server's background work is done


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def converse(name: str, chat: Chat, members: list[Member]) -> int:
    """Every member's scripted conversation, members side by side; the number of messages sent."""

    async def open_with(member: Member) -> None:
        member.opening_reply = await chat.say(member, member.script.opening)

    async def refer_back(member: Member, gap: int) -> None:
        score(member, gap, await chat.refer(member, member.script.question))

    await asyncio.gather(*(open_with(m) for m in members))
    messages = len(members)
    done = 0
    for gap in GAPS:
        for turn in range(done, gap):
            await asyncio.gather(*(chat.say(m, FILLER[turn % len(FILLER)]) for m in members))
            messages += len(members)
        done = gap
        await chat.settle()
        await asyncio.gather(*(refer_back(m, gap) for m in members))
        messages += len(members)
        hits = sum(m.answers[gap]["followed"] for m in members)
        print(f"  {name}, {gap} exchanges back: {hits}/{len(members)}", flush=True)
    await chat.settle()
    return messages


def score(member: Member, gap: int, reply: str) -> None:
    expected = member.expected()
    question = member.script.question
    member.answers[gap] = {"question": question, "reply": reply, "expected": list(expected),
                           "followed": follows(reply, expected, question)}  # fmt: skip


def follows(reply: str, expected: Sequence[str], question: str) -> bool:
    """Whether the reply names one of the expected words. A word the question itself holds does not count:
    echoing "How often should I walk it?" is not knowing that it was a puppy."""
    asked = question.lower()
    return any(word in reply.lower() for word in expected if word not in asked)


async def run(bench: Bench, dry_multiplier: float, config: Config, members: list[Member]) -> dict[str, Any]:
    bench.runtime.settings.memory = MemorySettings(**config.memory)
    bench.runtime.settings.model.dry.multiplier = dry_multiplier if config.dry else 0.0
    await bench.runtime.store.r.flushdb()

    async def say(member: Member, text: str) -> str:
        reply: ChatReply = await bench.client.chat(member.request(text))
        return reply.reply

    async def refer(member: Member, text: str) -> str:
        saved = await bench.save(member.user)
        reply = await say(member, text)
        await bench.cancel_background()
        await bench.restore(member.user, saved)
        return reply

    started = cpu_s()
    messages = await converse(config.name, Chat(say, refer, bench.settle), members)
    return {"cpu_s_per_message": (cpu_s() - started) / messages, "messages": messages,
            "cpu_of": "this process (the brain, in process)", "load_average": os.getloadavg()}  # fmt: skip


def default_persona() -> Persona:
    """The persona /v1/chat answers a member with who chose none, from the presets as Runtime loads them."""
    settings = Settings()
    return load_presets(settings.brain.personas_dir)[settings.brain.default_persona]


def llama_sampling(persona: Persona, slot_context: int) -> dict[str, Any]:
    """The brain's sampling of these requests under llama.cpp's names: greedy, the persona's repetition penalty
    over the whole context (the brain's reads the prompt and the reply; this llama-server refuses -1 for its
    whole context, so the slot's size says it), the same reply budget; no DRY, as llama.cpp's reads the whole
    context where the default profile's reads the reply alone."""
    return {"temperature": GREEDY["temperature"], "max_tokens": GREEDY["max_new_tokens"],
            "repeat_penalty": persona.sampling.repetition_penalty, "repeat_last_n": slot_context}  # fmt: skip


async def run_llama(server: Server, sampling: dict[str, Any], members: list[Member]) -> dict[str, Any]:
    """The members' scripts through llama.cpp's OpenAI route, each member's whole history kept here and sent."""
    assert server.process is not None
    pid = server.process.pid
    persona = default_persona()
    histories = {m.index: [{"role": "system", "content": persona.system_prompt}] for m in members}
    prompt_tokens: list[int] = []
    limits = fresh_connections(len(members) + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def reply_to(messages: list[dict[str, str]]) -> str:
            body = {"model": "default", "messages": messages, **sampling, "stream": True,
                    "stream_options": {"include_usage": True}}  # fmt: skip
            streamed = await stream_chat_completion(client, server, body)
            prompt_tokens.append(streamed.usage.get("prompt_tokens", 0))
            return streamed.text

        async def say(member: Member, text: str) -> str:
            history = histories[member.index]
            history.append({"role": "user", "content": text})
            reply = await reply_to(history)
            history.append({"role": "assistant", "content": reply.strip()})
            return reply

        async def refer(member: Member, text: str) -> str:
            # the conversation so far and the reference; the history goes on without the reference's exchange
            return await reply_to([*histories[member.index], {"role": "user", "content": text}])

        async def nothing_runs_behind() -> None:  # llama.cpp has no background work: a reply ends its request
            return None

        await settle(pid)  # the CPU of its start (loading, warming) is not part of the figure
        started = cpu_seconds(pid)
        messages = await converse(LLAMA_CPP, Chat(say, refer, nothing_runs_behind), members)
        await settle(pid)
        cpu = cpu_seconds(pid) - started
    return {"cpu_s_per_message": cpu / messages, "messages": messages, "cpu_of": "the llama-server process",
            "load_average": os.getloadavg(), "longest_prompt_tokens": max(prompt_tokens)}  # fmt: skip


def record(members: list[Member], cost: dict[str, Any]) -> dict[str, Any]:
    """One configuration's results: the share of references followed, by gap and by kind, the cost, the replies."""
    answers = [
        {"opening": m.script.opening, "opening_reply": m.opening_reply, **{str(g): a for g, a in m.answers.items()}}
        for m in members
    ]
    return {**tally(answers), **cost, "answers": answers}


def tally(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The references followed, by gap and by kind, counted from the answers."""
    kinds = {script.opening: script.kind for script in SCRIPTS}
    hits = {str(g): sum(a[str(g)]["followed"] for a in answers) for g in GAPS}
    by_kind: dict[str, dict[str, float]] = {}
    for kind in ("member", "bot", "topic"):
        ours = [a for a in answers if kinds.get(a["opening"]) == kind]
        if ours:
            by_kind[kind] = {str(g): sum(a[str(g)]["followed"] for a in ours) / len(ours) for g in GAPS}
    return {
        "followed": {g: hits[g] / len(answers) for g in hits},
        # references followed of those asked, and its 95 % Wilson interval: 21 references a gap tell apart only
        # large differences
        "followed_of": {g: [hits[g], len(answers)] for g in hits},
        "interval": {g: [round(x, 3) for x in wilson(hits[g], len(answers))] for g in hits},
        "by_kind": by_kind,
    }


def rescore(path: Path) -> None:
    """Score the replies in a results file again by the rule of now (follows), and rewrite it."""
    report = json.loads(path.read_text())
    for name, result in report["results"].items():
        for answer in result["answers"]:
            for g in GAPS:
                given = answer[str(g)]
                given["followed"] = follows(given["reply"], given["expected"], given["question"])
        result.update(tally(result["answers"]))
        print_result(name, result)
    path.write_text(json.dumps(report, indent=2) + "\n")


def print_result(name: str, result: dict[str, Any]) -> None:
    print(f"{name}: {result['followed']}, {result['cpu_s_per_message']:.2f} CPU s a message "
          f"(load {result['load_average'][0]:.1f})", flush=True)  # fmt: skip


async def brain_configs(args: argparse.Namespace, chosen: list[Config], results: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis = LocalRedis(Path(tmp) / "redis").start()
        try:
            settings = Settings(
                redis={"url": redis.url},
                model={"name": args.model, "max_new_tokens": 64, "cpu_weights": args.cpu_weights},
                limits={"rate_per_minute": 1_000_000},
            )
            settings.secrets = Secrets(api_key=API_KEY)
            runtime = Runtime.create(settings)
            bench = Bench(runtime, settings, {})
            dry_multiplier = settings.model.dry.multiplier  # the profile's; "nodry" sets it to 0 for its run
            runtime.start()
            try:
                for config in chosen:
                    members = new_members(args.members)
                    results[config.name] = record(members, await run(bench, dry_multiplier, config, members))
                    print_result(config.name, results[config.name])
                    write(args, results)
            finally:
                await bench.aclose()
                await runtime.stop()
        finally:
            redis.stop()


async def llama_config(args: argparse.Namespace, results: dict[str, Any]) -> None:
    binary = find_llama_server(args.llama_server)
    if binary is None:
        results[LLAMA_CPP] = {"skipped": "no llama-server on this machine (bench/serve_http.py finds one)"}
    elif args.model != DEFAULT_MODEL_ALIAS:  # start_llama serves the default model's GGUF, another model than this
        results[LLAMA_CPP] = {"skipped": f"llama.cpp serves the default model's GGUF only, not {args.model}"}
    else:
        # a slot per member, each with the brain's whole context: the client's history of 9 exchanges and a
        # reference fits in it
        slots, slot_context = args.members, ModelSettings().context_tokens
        sampling = llama_sampling(default_persona(), slot_context)
        with tempfile.TemporaryDirectory(prefix="ownchat-bench-") as tmp:
            server = start_llama(binary, Path(tmp), args.llama_threads, slots=slots, slot_context=slot_context)
            try:
                members = new_members(args.members)
                results[LLAMA_CPP] = record(members, await run_llama(server, sampling, members))
            finally:
                server.stop()
        results[LLAMA_CPP]["server"] = {"gguf": DEFAULT_MODEL_GGUF, "threads": args.llama_threads, "slots": slots,
                                        "slot_context": slot_context, "sampling": sampling,
                                        "repack": os.environ.get("OWNCHAT_LLAMA_REPACK") == "1"}  # fmt: skip
    if "skipped" in results[LLAMA_CPP]:
        print(f"{LLAMA_CPP}: skipped, {results[LLAMA_CPP]['skipped']}", flush=True)
    else:
        print_result(LLAMA_CPP, results[LLAMA_CPP])
    write(args, results)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = args.configs.split(",")
    results: dict[str, Any] = {}
    chosen = [configs()[name] for name in names if name != LLAMA_CPP]
    if chosen:  # no brain is loaded for llama.cpp alone
        await brain_configs(args, chosen, results)
    if LLAMA_CPP in names:  # after the brain has stopped, so that the two never share the cores
        await llama_config(args, results)
    return results


def write(args: argparse.Namespace, results: dict[str, Any]) -> None:
    report = {
        "model": args.model,
        "members": args.members,
        "gaps": list(GAPS),
        "profile_dry": "model.dry of the model profile (nodry: multiplier 0)",
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [*configs(), LLAMA_CPP]
    parser.add_argument("--configs", default=",".join(names), help=f"comma-separated, of {', '.join(names)}")
    parser.add_argument("--members", type=int, default=len(SCRIPTS))
    parser.add_argument("--model", default=DEFAULT_MODEL_ALIAS)
    parser.add_argument("--cpu-weights", default="float32")
    parser.add_argument("--llama-server", help="the llama-server binary (else $OWNCHAT_LLAMA_SERVER or the cache)")
    parser.add_argument("--llama-threads", type=int, default=2, help="llama-server's CPU threads (-t)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--rescore", action="store_true", help="score the replies in --out again, and stop")
    args = parser.parse_args()
    if args.rescore:
        rescore(Path(args.out))
        return
    unknown = set(args.configs.split(",")) - set(names)
    if unknown:
        parser.error(f"no configuration called {', '.join(sorted(unknown))}; choose of {', '.join(names)}")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
