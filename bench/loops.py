"""Loop benchmark: how many of the default model's replies repeat themselves, with DRY sampling off and on.

A reply loops when some run of four words occurs in it three times or more ("Dinner options: 2 meals" twelve
times, "no, no, no, ..."). The prompts are the kind members send (plans, lists, advice, small talk), each under
the assistant persona's system prompt and sampling (temperature 0.3, a fixed seed per prompt, so that every
configuration draws the same random numbers), 128 new tokens, through the brain's own engine in one batch.

    python -m bench.loops                       # 40 prompts; DRY off, the profile's DRY, DRY over the whole context
    python -m bench.loops --prompts 8 --max-new-tokens 64    # a quick look

Prints a table and writes bench/results/loops.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from brain import personas as persona_lib  # noqa: E402
from brain.api_models import DEFAULT_DRY_BREAKERS  # noqa: E402
from brain.engine.batching import Engine, GenerationRequest  # noqa: E402
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS, load_serving_model  # noqa: E402
from brain.engine.sampling import Dry, breaker_token_ids  # noqa: E402
from brain.profiles import SMALL  # noqa: E402
from brain.prompt import render  # noqa: E402
from brain.settings import load_settings  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "loops.json"
TOPICS = [
    "I'm going to Italy for a week. Can you plan my days?",
    "What should I eat in Lisbon?",
    "Give me a list of things to pack for a beach holiday.",
    "Suggest some must-visit places in Spain.",
    "Plan my meals for tomorrow: breakfast, lunch and dinner.",
    "What are good exercises for a beginner?",
    "How do I learn to play the guitar?",
    "Tell me about Venice.",
    "What can I cook with rice, eggs and onions?",
    "Recommend three books for a long train ride.",
    "How can I sleep better?",
    "What is a good morning routine?",
    "I have a job interview on Monday. How should I prepare?",
    "Give me ideas for a birthday party for my sister.",
    "What should I see in Paris in two days?",
    "How do I keep a plant alive indoors?",
    "List some fun things to do on a rainy day.",
    "What are the pros and cons of living in a big city?",
    "How do I start saving money?",
    "Can you suggest a weekly workout plan?",
    "What's the best way to learn a new language?",
    "Plan a road trip along the coast of Portugal.",
    "What should I bring to a picnic?",
    "Give me tips for running my first 5 km race.",
    "How do I make friends in a new town?",
    "Which museums should I visit in London?",
    "What can I do to be more productive at work?",
    "Suggest a menu for a dinner with friends.",
    "How do I take care of a puppy?",
    "What are some hobbies I can start at home?",
    "Tell me about the history of Rome.",
    "Plan a weekend in Barcelona for me.",
    "What should I know before hiking in the mountains?",
    "Give me a shopping list for a week of healthy food.",
    "How do I write a good cover letter?",
    "What games can I play with kids at home?",
    "Which cities in Germany are worth a visit?",
    "How can I reduce stress?",
    "What are good snacks for a long study session?",
    "Describe a perfect day at the beach.",
]


def loops(text: str, n: int = 4, times: int = 3) -> bool:
    """Whether some run of ``n`` words occurs ``times`` times or more in ``text``."""
    words = text.lower().split()
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return any(count >= times for count in grams.values())


async def collect(handle: Any) -> list[int]:
    return [token async for token in handle]


def for_prompt(dry: Dry | None, prompt: list[int]) -> Dry | None:
    """``dry`` for this prompt: where it looks at the reply alone (skip -1), it skips this prompt's tokens."""
    return replace(dry, skip=len(prompt)) if dry is not None and dry.skip < 0 else dry


async def guard_right(engine: Engine, loaded: Any, system_prompt: str, dry: Dry | None) -> tuple[int, int]:
    """How many of the trainer's guard questions the model answers right, greedy, with these DRY settings (the
    guard's perplexity is a score of given text, which no sampling setting changes)."""
    from trainer.nightly.guard import load_questions

    questions = load_questions()
    prompts = [
        render(
            loaded.tokenizer, [{"role": "system", "content": system_prompt}, {"role": "user", "content": q.question}]
        )
        for q in questions
    ]
    handles = [
        engine.submit(GenerationRequest(prompt_ids=p, max_new_tokens=48, dry=for_prompt(dry, p))) for p in prompts
    ]
    replies = [str(loaded.tokenizer.decode(await collect(h), skip_special_tokens=True)) for h in handles]
    return sum(q.is_right(reply) for q, reply in zip(questions, replies, strict=True)), len(questions)


async def run(
    engine: Engine, prompts: list[list[int]], sampling: Any, dry: Dry | None, max_new: int
) -> list[list[int]]:
    handles = [
        engine.submit(
            GenerationRequest(
                prompt_ids=prompt,
                max_new_tokens=max_new,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                repetition_penalty=sampling.repetition_penalty,
                seed=index,
                dry=for_prompt(dry, prompt),
            )
        )
        for index, prompt in enumerate(prompts)
    ]
    return [await collect(handle) for handle in handles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--variants",
        default="off,profile",
        help="DRY settings to compare: off; profile (the small model's); window64 (llama.cpp's breakers, the last 64 "
        "tokens); whole (llama.cpp's breakers, the whole context); newline (whole, breaking only at new lines); none "
        "(whole, no breakers); strong (newline, multiplier 1.5); reply (newline, over the reply alone)",
    )
    parser.add_argument("--out", help="where to write the results (default bench/results/loops.json)")
    args = parser.parse_args()
    settings = load_settings()
    loaded = load_serving_model(
        DEFAULT_MODEL_ALIAS, cache_dir=settings.model.cache_dir, device="cpu", dtype="float32", cpu_weights="float32"
    )
    persona = persona_lib.load_presets(settings.brain.personas_dir)["assistant"]
    prompts = [
        render(
            loaded.tokenizer,
            [{"role": "system", "content": persona.system_prompt}, {"role": "user", "content": text}],
        )
        for text in (TOPICS * 10)[: args.prompts]
    ]
    vocabulary = loaded.tokenizer.batch_decode([[index] for index in range(len(loaded.tokenizer))])
    variants: dict[str, dict[str, Any] | None] = {
        "off": None,
        "profile": {},
        "window64": {"penalty_last_n": 64, "breakers": list(DEFAULT_DRY_BREAKERS)},
        "whole": {"penalty_last_n": -1, "breakers": list(DEFAULT_DRY_BREAKERS)},
        "newline": {"penalty_last_n": -1, "breakers": ["\n"]},
        "none": {"penalty_last_n": -1, "breakers": []},
        "reply": {"penalty_last_n": -1, "breakers": ["\n"], "reply_only": True},
        "strong": {"penalty_last_n": -1, "multiplier": 1.5, "breakers": ["\n"]},
    }
    configs: dict[str, Dry | None] = {}
    for name in args.variants.split(","):
        change = variants[name]
        if change is None:
            configs[name] = None
            continue
        values: dict[str, Any] = {**SMALL.dry_values(), **change}
        named = values.pop("breakers", values.pop("sequence_breakers"))
        values.pop("sequence_breakers", None)
        reply_only = values.pop("reply_only", False)
        built = Dry(**values, breaker_ids=breaker_token_ids(vocabulary, named) if named else frozenset())
        # reply_only: skip each prompt's own tokens (a sentinel that run() and guard_right() replace per prompt)
        configs[name] = replace(built, skip=-1) if reply_only else built
    engine = Engine(loaded.model, max_batch_size=64, eos_token_ids=loaded.eos_token_ids, device=loaded.device)
    engine.start()
    rows: dict[str, Any] = {}
    try:
        for name, dry in configs.items():
            cpu, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            replies = asyncio.run(run(engine, prompts, persona.sampling, dry, args.max_new_tokens))
            after = resource.getrusage(resource.RUSAGE_SELF)
            texts = [str(loaded.tokenizer.decode(reply, skip_special_tokens=True)).strip() for reply in replies]
            looping = sum(loops(text) for text in texts)
            right, asked = asyncio.run(guard_right(engine, loaded, persona.system_prompt, dry))
            rows[name] = {
                "guard_questions_right": f"{right}/{asked}",
                "looping": looping,
                "replies": len(texts),
                "share": looping / len(texts),
                "tokens": sum(map(len, replies)),
                "cpu_s": (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime),
                "wall_s": time.perf_counter() - wall,
                "dry": None if dry is None else {**dry.__dict__, "breaker_ids": len(dry.breaker_ids), "skip": dry.skip},
                "replies_text": texts,
                "loops": [loops(text) for text in texts],
            }
            print(f"{name}: {looping}/{len(texts)} replies loop ({looping / len(texts):.0%}); guard {right}/{asked}; "
                  f"{rows[name]['tokens']} tokens; {rows[name]['cpu_s']:.0f} CPU s", flush=True)  # fmt: skip
    finally:
        engine.stop()
    out = RESULTS if args.out is None else Path(args.out)
    out.write_text(
        json.dumps(
            {
                "model": DEFAULT_MODEL_ALIAS,
                "persona": "assistant",
                "sampling": persona.sampling.model_dump(),
                "max_new_tokens": args.max_new_tokens,
                "loop": "a run of 4 words occurring 3 times or more in one reply",
                "machine": platform.platform(),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
