"""Members' ratings in a nightly run: exported beside the logs (scrubbed), split by prompt into train,
validation and held-out, and turned into what the fine-tune learns from and what the gate judges by.

The brain hands over only turns whose author, and ratings whose rater, were opted in when the rating was
given (store.ratings.rated_turns). A /forget can land while we read: each member's tombstone is checked after
reading, and a forgotten author's turns or a forgotten rater's ratings from before it are dropped.

Replies to one prompt -- a /retry's replies, or replies to the very same conversation -- form a group. A
group whose replies were rated differently gives DPO pairs (the better rated reply first); every other
rated reply is rated on its own and goes to KTO. A group lands in one split, chosen by a hash of its key,
so that the same prompt is held out in every run and pairs never straddle two splits.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from brain.feedback_records import RatedTurn
from brain.store import Store
from trainer.core.examples import ChatRenderer, Example, PairExample, RatedExample
from trainer.nightly.clean import DATA_DIR, normalized
from trainer.nightly.files import read_jsonl, write_jsonl
from trainer.nightly.scrub import scrub
from trainer.nightly.stats import Pair, prompt_pairs

RATINGS = "export/ratings.jsonl"
RATING_SPLITS = ("train", "val", "heldout")


@dataclass
class RatingsExport:
    turns: int = 0
    ratings: int = 0
    liked: int = 0  # turns rated above 0 on balance
    disliked: int = 0
    dropped_after_forget: int = 0
    left_out: int = 0  # beyond the bound of rated turns read (the oldest go)
    members: set[str] = field(default_factory=set)  # authors and raters
    scrubbed: Counter = field(default_factory=Counter)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


async def read_rated(store: Store, limit: int) -> tuple[list[RatedTurn], int, int]:
    """The newest ``limit`` rated turns that may be learned from, how many a forget dropped meanwhile, and how
    many were left out beyond the bound."""
    turns: list[RatedTurn] = []
    left_out = 0
    async for rated in store.ratings.rated_turns():
        if rated.ratings:
            turns.append(rated)
        if len(turns) > 2 * limit:  # keep memory bounded while reading
            turns.sort(key=lambda t: t.turn.at, reverse=True)
            left_out += len(turns) - limit
            del turns[limit:]
    turns.sort(key=lambda t: t.turn.at, reverse=True)
    left_out += max(0, len(turns) - limit)
    del turns[limit:]
    forgotten: dict[str, int | None] = {}
    for member in {t.turn.author for t in turns} | {r.rater for t in turns for r in t.ratings}:
        forgotten[member] = await store.tombstones.forgotten_at(member)

    def after_forget(member: str, at: str) -> bool:
        gone = forgotten[member]
        return gone is None or _ms(at) > gone

    kept, dropped = [], 0
    for rated in turns:
        if not after_forget(rated.turn.author, rated.turn.at):
            dropped += 1
            continue
        ratings = [r for r in rated.ratings if after_forget(r.rater, r.at)]
        dropped += len(rated.ratings) - len(ratings)
        if ratings:
            kept.append(rated.model_copy(update={"ratings": ratings}))
    kept.sort(key=lambda t: (t.turn.at, t.turn.turn_id))
    return kept, dropped, left_out


def scrubbed(rated: RatedTurn, counts: Counter) -> RatedTurn:
    """The turn with personal data scrubbed from its prompt and reply (see scrub.py)."""
    prompt = [{**message, "content": scrub(message.get("content", ""), counts)} for message in rated.turn.prompt]
    turn = rated.turn.model_copy(update={"prompt": prompt, "reply": scrub(rated.turn.reply, counts)})
    return rated.model_copy(update={"turn": turn})


def write_ratings(run_dir: Path, turns: list[RatedTurn], dropped: int, left_out: int) -> RatingsExport:
    summary = RatingsExport(dropped_after_forget=dropped, left_out=left_out)
    clean = [scrubbed(rated, summary.scrubbed) for rated in turns]
    for rated in clean:
        summary.turns += 1
        summary.ratings += len(rated.ratings)
        summary.liked += rated.score > 0
        summary.disliked += rated.score < 0
        summary.members |= {rated.turn.author, *(r.rater for r in rated.ratings)}
    write_jsonl(run_dir / RATINGS, [json.loads(rated.dumps()) for rated in clean])
    return summary


def load_exported(run_dir: Path) -> list[RatedTurn]:
    path = run_dir / RATINGS
    return [RatedTurn.model_validate(row) for row in read_jsonl(path)] if path.is_file() else []


def groups(turns: Iterable[RatedTurn]) -> dict[str, list[RatedTurn]]:
    """Rated turns by prompt: a /retry joins its first reply's group, and replies to the very same
    conversation join the group that first had it."""
    by_group: dict[str, str] = {}
    by_prompt: dict[str, str] = {}
    out: dict[str, list[RatedTurn]] = {}
    for rated in turns:
        digest = hashlib.sha256(json.dumps(rated.turn.prompt, sort_keys=True).encode()).hexdigest()
        key = by_group.get(rated.group) or by_prompt.get(digest) or rated.group
        by_group.setdefault(rated.group, key)
        by_prompt.setdefault(digest, key)
        out.setdefault(key, []).append(rated)
    return out


def split_point(key: str) -> float:
    """A group's place in [0, 1): fixed by its key, so a night's split does not depend on the order of export."""
    return int(hashlib.sha256(f"ratings\0{key}".encode()).hexdigest()[:8], 16) / 16**8


def split_groups(liked: dict[str, bool], val_fraction: float, heldout_fraction: float) -> dict[str, str]:
    """Each group's split, stratified: the groups with a liked reply and those without are each divided in the
    given fractions (in the order of their split points), so that rare likes reach the held-out set and
    validation as well as training. Without the strata, a taste the base model meets in one reply of twenty, or
    that members like only on some kinds of prompt, can leave the held-out set with no like at all, and then
    neither the gate nor the reward model's check can judge a ranking."""
    out: dict[str, str] = {}
    for stratum in (True, False):
        keys = sorted((k for k, v in liked.items() if v is stratum), key=split_point)
        heldout = round(len(keys) * heldout_fraction)
        val = round(len(keys) * (heldout_fraction + val_fraction)) - heldout
        for index, key in enumerate(keys):
            out[key] = "heldout" if index < heldout else "val" if index < heldout + val else "train"
    return out


def split_ratings(run_dir: Path, *, val_fraction: float, heldout_fraction: float) -> dict[str, int]:
    """Write each split's rated turns (whole groups) under data/; returns the turns per split."""
    parts: dict[str, list[RatedTurn]] = {name: [] for name in RATING_SPLITS}
    by_group = groups(load_exported(run_dir))
    liked = {key: any(rated.score > 0 for rated in members) for key, members in by_group.items()}
    for key, split in split_groups(liked, val_fraction, heldout_fraction).items():
        parts[split] += by_group[key]
    for name, members in parts.items():
        write_jsonl(run_dir / DATA_DIR / f"ratings-{name}.jsonl", [json.loads(rated.dumps()) for rated in members])
    return {name: len(members) for name, members in parts.items()}


def load_ratings(run_dir: Path, split: str, user: str | None = None) -> list[RatedTurn]:
    """A split's rated turns; of one author's turns only, for that member's own adapter."""
    path = run_dir / DATA_DIR / f"ratings-{split}.jsonl"
    turns = [RatedTurn.model_validate(row) for row in read_jsonl(path)] if path.is_file() else []
    return [t for t in turns if user is None or t.turn.author == user]


@dataclass
class PreferenceExamples:
    pairs: list[PairExample] = field(default_factory=list)
    rated: list[RatedExample] = field(default_factory=list)
    liked: list[Example] = field(default_factory=list)  # every liked reply, for next-token training


def preference_examples(renderer: ChatRenderer, turns: list[RatedTurn], max_pairs: int) -> PreferenceExamples:
    """DPO pairs from groups whose replies were rated differently (the widest gaps first, at most ``max_pairs``
    per group), KTO's rated replies from the rest, and every liked reply for the next-token part."""
    out = PreferenceExamples()
    lone: list[tuple[tuple[list[int], list[int]], bool]] = []
    for members in groups(turns).values():
        encoded = []
        for rated in members:
            parts = renderer.completion_parts(rated.turn.prompt, rated.turn.reply) if rated.score else None
            if parts is not None:
                encoded.append((rated.score, parts))
                if rated.liked:  # a reply chosen over another in a comparison is learned from as the better one only
                    out.liked.append(renderer.completion(*parts))
        ranked = [(i, j) for i in range(len(encoded)) for j in range(len(encoded)) if encoded[i][0] > encoded[j][0]]
        ranked.sort(key=lambda ij: encoded[ij[0]][0] - encoded[ij[1]][0], reverse=True)
        for i, j in ranked[:max_pairs]:
            out.pairs.append(PairExample(renderer.completion(*encoded[i][1]), renderer.completion(*encoded[j][1])))
        paired = {k for pair in ranked[:max_pairs] for k in pair}
        lone += [(parts, score > 0) for k, (score, parts) in enumerate(encoded) if k not in paired]
    for index, ((prompt_ids, reply_ids), liked) in enumerate(lone):
        other = lone[(index + 1) % len(lone)][0][1]  # another example's reply after this prompt: KTO's KL estimate
        out.rated.append(
            RatedExample(
                reply=renderer.completion(prompt_ids, reply_ids),
                desirable=liked,
                mismatched=renderer.completion(prompt_ids, other),
            )
        )
    return out


@dataclass
class RatedReplies:
    """Rated replies (each a prompt and its reply, liked on balance or not), and the pairs among them: a liked
    and a disliked reply to one prompt, with that prompt's number. What a scoring of replies is judged on."""

    replies: list[Example] = field(default_factory=list)
    liked: list[bool] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    pair_prompts: list[int] = field(default_factory=list)


def heldout_replies(renderer: ChatRenderer, turns: list[RatedTurn]) -> RatedReplies:
    """The held-out replies rated on balance for the gate, and the pairs of replies to one prompt among them."""
    out = RatedReplies()
    prompts: list[int] = []
    for number, members in enumerate(groups(turns).values()):
        for rated in members:
            parts = renderer.completion_parts(rated.turn.prompt, rated.turn.reply) if rated.score else None
            if parts is not None:
                out.replies.append(renderer.completion(*parts))
                out.liked.append(rated.score > 0)
                prompts.append(number)
    out.pairs = prompt_pairs(out.liked, prompts)
    out.pair_prompts = [prompts[liked] for liked, _ in out.pairs]
    return out


def disliked_in_run(run_dir: Path, user: str | None = None) -> set[str]:
    """The replies members disliked on balance in every split of the run's ratings (of ``user``'s turns only,
    given one): what the next-token part must not learn, nor a candidate be judged on predicting."""
    return disliked_replies(t for split in RATING_SPLITS for t in load_ratings(run_dir, split, user))


def disliked_replies(turns: Iterable[RatedTurn]) -> set[str]:
    """Replies members disliked on balance (normalized text): the next-token part must not learn them."""
    return {normalized(rated.turn.reply) for rated in turns if rated.score < 0}


def without_replies(conversations: list[dict[str, Any]], replies: set[str]) -> list[dict[str, Any]]:
    """The conversations less the turns whose reply is one of ``replies`` (a conversation left empty goes)."""
    if not replies:
        return conversations
    out = []
    for conv in conversations:
        turns = [turn for turn in conv["turns"] if normalized(turn["reply"]) not in replies]
        if turns:
            out.append({**conv, "turns": turns})
    return out
