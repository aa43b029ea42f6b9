"""What the nightly reward model can see: how well heads on different views of the base model's hidden states
rank members' liked replies above their disliked ones, for every taste of the feedback bench.

The base model answers each bench prompt several times (as members are served: the default persona's sampling),
each taste rates every reply, and each view's head (trainer.nightly.reward.fit, the nightly's own) is fitted on
four fifths of the prompts and scores the fifth (folds by prompt, as the nightly's check). Reported per taste and
view: the AUC over all replies, and the share of pairs of a liked and a disliked reply to one prompt ranked
right (what best-of-n pairs need: the reward model picks among one prompt's replies).

    python -m bench.reward_features [--replies 6] [--out bench/results/reward_features.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from bench.feedback import PROMPTS
from bench.tastes import NEARNESS, TASTES, prefer
from brain.api_models import SamplingParams
from brain.engine.model_loading import DEFAULT_MODEL_ALIAS
from brain.settings import Settings
from trainer.core.examples import ChatRenderer
from trainer.core.models import load_model
from trainer.nightly.reward import PARTS, Part, Rated, out_of_fold_scores, reply_features, sampled_replies
from trainer.nightly.run import cpu_bf16
from trainer.nightly.stats import auc, pair_accuracy
from trainer.settings import FinetuneSettings

RESULTS = Path(__file__).parent / "results" / "reward_features.json"
# views of a reply: the nightly's (all of PARTS) and what it grew from
VIEWS: dict[str, tuple[Part, ...]] = {
    "final layer pooled (the nightly before)": ("final", "length"),
    "middle layer pooled": ("middle", "length"),
    "final and middle pooled": ("final", "middle", "length"),
    "+ by place": ("final", "middle", "final by place", "middle by place", "length"),
    "final + embeddings": ("final", "embeddings", "length"),
    "middle by place + embeddings": ("middle", "middle by place", "embeddings", "length"),
    "all (the nightly's)": PARTS,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=6, help="replies drawn per prompt")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--l2", type=float, default=0.1)
    parser.add_argument("--replies-file", type=Path, help="keep the drawn replies here, and reuse them if it exists")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console()
    started = time.monotonic()
    settings = Settings()
    loaded = load_model(DEFAULT_MODEL_ALIAS, cpu_bf16=cpu_bf16(settings))
    model, tokenizer = loaded.model, loaded.tokenizer
    renderer = ChatRenderer(tokenizer, max_tokens=FinetuneSettings().max_seq_tokens)
    sampling = SamplingParams()
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    ids = [renderer.completion_parts(p, "")[0] for p in prompts]  # type: ignore[index]
    torch.manual_seed(0)
    cached = args.replies_file is not None and args.replies_file.exists()
    replies: list[list[str]] = json.loads(args.replies_file.read_text()) if cached else []
    for start in track(range(0 if not replies else len(ids), len(ids), 8), description="drawing", console=console):
        replies += sampled_replies(
            model, tokenizer, ids[start : start + 8], n=args.replies, max_new_tokens=96,
            temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
            repetition_penalty=sampling.repetition_penalty, eos_token_ids=[tokenizer.eos_token_id],
            pad_id=tokenizer.pad_token_id, device=loaded.device,
        )  # fmt: skip
    if args.replies_file is not None:
        args.replies_file.write_text(json.dumps(replies))
    drawn = [(p, q, r) for p, q, rs in zip(PROMPTS, prompts, replies, strict=True) for r in dict.fromkeys(rs) if r]
    examples = []
    for _, prompt, reply in drawn:
        parts = renderer.completion_parts(prompt, reply)
        assert parts is not None
        examples.append(renderer.completion(*parts))
    features = {
        view: reply_features(
            model,
            examples,
            batch_size=8,
            max_batch_tokens=2048,
            pad_id=tokenizer.pad_token_id,
            device=loaded.device,
            parts=parts,
        )  # fmt: skip
        for view, parts in track(VIEWS.items(), description="features", console=console)
    }
    rows: dict[str, dict[str, Any]] = {}
    for taste, rater in TASTES.items():
        # members rate every reply, and compare every second one with the next (as the bench's --compare-share 0.5)
        rated = [Rated(e, rater(p, r) == 1, p) for e, (p, _, r) in zip(examples, drawn, strict=True)]
        of = list(range(len(rated)))
        for i in range(0, len(drawn) - 1, 2):
            if drawn[i][0] != drawn[i + 1][0]:
                continue
            choice = prefer(rater, NEARNESS[taste], drawn[i][0], drawn[i][2], drawn[i + 1][2])
            if choice is not None:
                for k, index in enumerate((i, i + 1)):
                    rated.append(Rated(examples[index], k == choice, drawn[i][0]))
                    of.append(index)
        # what best-of-n needs: of two replies to one prompt, the one members prefer ranked above
        preferred = []
        for i in range(len(drawn)):
            for j in range(i + 1, len(drawn)):
                if drawn[i][0] == drawn[j][0]:
                    choice = prefer(rater, NEARNESS[taste], drawn[i][0], drawn[i][2], drawn[j][2])
                    if choice is not None:
                        preferred.append((i, j) if choice == 0 else (j, i))
        liked = [r.liked for r in rated[: len(drawn)]]
        rows[taste] = {"replies": len(drawn), "liked": sum(liked), "pairs": len(preferred), "views": {}}
        for view in VIEWS:
            scores = out_of_fold_scores(features[view][of], rated, args.l2, args.folds)[: len(drawn)]
            kept = [(s, r) for s, r in zip(scores, rated[: len(drawn)], strict=True) if s is not None]
            ranked = [(a, b) for a, b in preferred if scores[a] is not None and scores[b] is not None]
            rows[taste]["views"][view] = {
                "auc": auc([s for s, _ in kept], [r.liked for _, r in kept]),
                "pair_accuracy": pair_accuracy(scores, ranked),  # type: ignore[arg-type]
            }
    table = Table(title=f"Reward model views: out-of-fold ranking ({args.folds} folds by prompt, L2 {args.l2})")
    table.add_column("view")
    for taste, row in rows.items():
        table.add_column(
            f"{taste} ({row['liked']}/{row['replies']} liked, {row['pairs']} pairs)\nAUC / preferred ranked first"
        )
    for view in VIEWS:
        cells = []
        for row in rows.values():
            v = row["views"][view]
            cells.append(f"{v['auc']:.3f} / {v['pair_accuracy']:.3f}" if v["pair_accuracy"] is not None else "-")
        table.add_row(view, *cells)
    console.print(table)
    load = os.getloadavg()
    console.print(f"{time.monotonic() - started:.0f} s, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    seconds = round(time.monotonic() - started)
    out = {"replies_per_prompt": args.replies, "l2": args.l2, "seconds": seconds, "load_average": load, "tastes": rows}
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
