"""What a night can learn when the reward is right: the ceiling the nightly's reward model works under.

Each night draws best-of-n replies (temperature 1, as the nightly's best-of-n) from the model of the night before
for a sample of the feedback bench's prompts, ranks them by the taste itself (bench/tastes.py's ``NEARNESS``: a
perfect reward model), and trains the nightly's objectives on the best against the worst (DPO, beta 0.1) plus
next-token on the best where it is liked, with the nightly's LoRA (r 16, every linear layer) and schedule (16 steps
of 8 pairs, lr 2e-4, a warmup of 2). Before the first night and after each, the like-rate of replies to every
prompt drawn as members are served (the default persona's sampling). Nothing here is a member's: no Redis, no
gate, no guard. What it shows: how far the training moves a taste when its pairs are right, against what the
feedback bench's nights reach with a reward model learned from members' ratings.

    python -m bench.taste_ceiling --taste sparse --nights 2 [--out bench/results/taste_ceiling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bench.feedback import PROMPTS
from bench.tastes import NEARNESS, TASTES
from brain import personas
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS
from brain.settings import Settings
from trainer.core.batches import collate, collate_pairs
from trainer.core.evaluation import fill_reference
from trainer.core.examples import ChatRenderer, Example, PairExample
from trainer.core.lr_schedule import warmup_cosine_schedule
from trainer.core.models import add_lora, load_model
from trainer.core.objectives import NextToken, SigmoidDPO
from trainer.nightly.reward import sampled_replies
from trainer.nightly.run import cpu_bf16
from trainer.settings import FinetuneSettings

RESULTS = Path(__file__).parent / "results" / "taste_ceiling.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taste", default="sparse", choices=sorted(NEARNESS))
    parser.add_argument("--nights", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=32, help="prompts drawn for a night (the bench's best-of-n)")
    parser.add_argument("--best-of-n", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--measure-replies", type=int, default=4, help="replies per prompt for a like-rate")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.nights < 0 or min(args.prompts, args.best_of_n, args.steps, args.measure_replies) < 1:
        parser.error("--nights >= 0; --prompts, --best-of-n, --steps and --measure-replies >= 1")
    console = Console()
    started = time.monotonic()
    rater, nearness = TASTES[args.taste], NEARNESS[args.taste]
    settings = Settings()
    persona = personas.load_presets(settings.brain.personas_dir)[settings.brain.default_persona]
    loaded = load_model(DEFAULT_MODEL_ALIAS, cpu_bf16=cpu_bf16(settings))
    tokenizer, pad = loaded.tokenizer, loaded.tokenizer.pad_token_id
    finetune = FinetuneSettings()
    renderer = ChatRenderer(tokenizer, max_tokens=finetune.max_seq_tokens)
    model = add_lora(loaded.model, finetune)
    system = {"role": "system", "content": persona.system_prompt}

    def messages(prompt: str) -> list[dict[str, Any]]:
        return [system, {"role": "user", "content": prompt}]

    def example(prompt: str, reply: str) -> Example:
        parts = renderer.completion_parts(messages(prompt), reply)
        assert parts is not None
        return renderer.completion(*parts)

    def draw(prompts: list[str], n: int, served: bool) -> list[list[str]]:
        model.eval()
        torch.manual_seed(0)
        shape: dict[str, Any] = {"temperature": 1.0}
        if served:
            sampling = persona.sampling
            shape = {k: getattr(sampling, k) for k in ("temperature", "top_p", "top_k", "repetition_penalty")}
        ids = [renderer.completion_parts(messages(p), "")[0] for p in prompts]  # type: ignore[index]
        with torch.autocast(loaded.device.type, dtype=torch.bfloat16, enabled=cpu_bf16(settings)):
            return sampled_replies(
                model, tokenizer, ids, n=n, max_new_tokens=64, eos_token_ids=[tokenizer.eos_token_id], pad_id=pad,
                device=loaded.device, **shape,
            )  # fmt: skip

    def measure(night: int) -> dict[str, Any]:
        replies = draw(PROMPTS, args.measure_replies, served=True)
        liked = [rater(p, r) == 1 for p, rs in zip(PROMPTS, replies, strict=True) for r in rs]
        words = sorted(len(r.split()) for rs in replies for r in rs)
        row = {"night": night, "liked": sum(liked), "replies": len(liked), "like_rate": sum(liked) / len(liked),
               "median_words": words[len(words) // 2], "examples": [rs[0] for rs in replies[:4]]}  # fmt: skip
        console.print(f"{args.taste} after night {night}: {row['liked']}/{row['replies']} liked, "
                      f"median {row['median_words']} words")  # fmt: skip
        return row

    rows = [measure(0)]
    nights = []
    rng = random.Random(0)
    for night in range(1, args.nights + 1):
        prompts = rng.sample(PROMPTS, min(args.prompts, len(PROMPTS)))
        pairs: list[PairExample] = []
        liked_best: list[Example] = []
        for prompt, replies in zip(prompts, draw(prompts, args.best_of_n, served=False), strict=True):
            ranked = sorted(dict.fromkeys(r for r in replies if r), key=lambda r: nearness(prompt, r), reverse=True)
            if len(ranked) < 2 or nearness(prompt, ranked[0]) == nearness(prompt, ranked[-1]):
                continue
            pairs.append(PairExample(example(prompt, ranked[0]), example(prompt, ranked[-1])))
            if rater(prompt, ranked[0]) == 1:
                liked_best.append(pairs[-1].chosen)
        # the reference: the model of the night before
        with torch.autocast(loaded.device.type, dtype=torch.bfloat16, enabled=cpu_bf16(settings)):
            fill_reference(
                model, pairs, [], batch_size=8, max_batch_tokens=finetune.max_batch_tokens, pad_id=pad,
                device=loaded.device,
            )  # fmt: skip
        model.train()
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=finetune.learning_rate, weight_decay=0.0)
        schedule = warmup_cosine_schedule(optimizer, max(1, args.steps // 8), args.steps, finetune.min_lr_ratio)
        dpo, next_token = SigmoidDPO(0.1), NextToken()
        for step in range(args.steps):
            with torch.autocast(loaded.device.type, dtype=torch.bfloat16, enabled=cpu_bf16(settings)):
                batch = [pairs[(step * 8 + i) % len(pairs)] for i in range(8)]
                part = dpo(model, collate_pairs(batch, pad).to(loaded.device))
                loss = part.total / part.count
                if liked_best:
                    best = [liked_best[(step * 8 + i) % len(liked_best)] for i in range(min(8, len(liked_best)))]
                    nt = next_token(model, collate(best, pad).to(loaded.device))
                    loss = loss + nt.total / nt.count
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, finetune.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        nights.append({"night": night, "pairs": len(pairs), "liked_best": len(liked_best)})
        rows.append(measure(night))
    result = {
        "taste": args.taste, "model": DEFAULT_MODEL_ALIAS, "nights": nights, "like_rates": rows,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "seconds": round(time.monotonic() - started, 1), "load_average": os.getloadavg(),
    }  # fmt: skip
    saved = json.loads(args.out.read_text()) if args.out.is_file() else {}
    saved[args.taste] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(saved, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
