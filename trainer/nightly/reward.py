"""A reward model of the community's taste, trained each night on every member's ratings, and the on-policy
pairs it makes.

The model is a linear head on the frozen base model (the reward-model recipe of Ouyang et al. 2022, with the body
frozen to fit a CPU night): what the head sees of a prompt and reply is the base model's final and middle hidden
states over the reply pooled several ways (over all of it, its opening, its spans by place), the mean of its input
embeddings and its length (PARTS, below). It learns from liked against disliked replies with the logistic loss (each
class weighted by its count, so that a night with few likes still learns what they share), plus the Bradley-Terry
loss on replies to one prompt rated apart (a /retry, a comparison). Its L2 weight is chosen on the validation
ratings; whether it is trusted at all is decided by its AUC on every rating, each scored by a head fitted without
that rating's prompt (folds by prompt; or, where enough pairs of replies to one prompt were rated apart, the share
of those pairs it ranks right: a comparison's two replies are often alike in what sets replies to other prompts
apart).

When it is: several replies per rated training prompt are drawn from the model serving now, scored by it,
and the best against the worst becomes a DPO pair (best-of-n, as in rejection-sampling fine-tuning and
Xiong et al. 2024's iterative DPO). Dislikes teach the reward model what to avoid, so the pairs carry the
signal of nights when likes are rare.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel

from brain.api_models import SamplingParams
from brain.feedback_records import RatedTurn
from trainer.core.batches import chunks, collate, left_padded
from trainer.core.examples import IGNORE_INDEX, ChatRenderer, Example
from trainer.nightly.ratings import groups
from trainer.nightly.stats import RankingDifference, auc, pair_accuracy, paired_mean_difference, prompt_pairs
from trainer.settings import RewardModelSettings

ONPOLICY_PAIRS = "onpolicy-pairs.jsonl"  # in the target's folder of the run
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
STEPS = 300
OPENING = 4  # hidden states over a reply's start that the head sees averaged: the one before it, and 3 of its own


class RewardCheck(BaseModel):
    """How the night's reward model did, for the report."""

    trained_on: int = 0
    liked: int = 0
    disliked: int = 0
    l2: float = 0.0
    heldout: int = 0
    heldout_liked: int = 0
    heldout_auc: float | None = None
    # the check is cross-validated: "held-out" is every rating, each scored by a head fitted without its prompt's
    folds: int = 0
    # pairs of a liked and a disliked held-out reply to one prompt, and the share it ranks right (where enough
    # pairs judge it instead of the AUC)
    heldout_pairs: int = 0
    heldout_pair_accuracy: float | None = None
    passed: bool = False
    reason: str = ""
    pairs: int = 0  # best-of-n pairs made from it


class RepliesJudged(BaseModel):
    """The candidate's and live's own replies to the held-out prompts, drawn alike and scored by the night's
    reward model: the mean of its like estimate (the logistic of its score) per prompt, compared prompt by prompt
    (for the gate and the report)."""

    live: str
    prompts: int
    samples: int  # replies drawn per prompt from each model
    candidate_like: float
    live_like: float
    se: float  # of the mean per-prompt difference

    @property
    def difference(self) -> RankingDifference:
        return RankingDifference(a=self.candidate_like, b=self.live_like, se=self.se)


class OnPolicyPair(BaseModel):
    """Two of the serving model's replies to a rated prompt, the reward model's best and worst (data/)."""

    prompt: list[dict[str, Any]]
    chosen: str
    rejected: str
    margin: float
    # the reward model's score of the chosen reply: above 0, it reads as more likely liked than not (the head's
    # classes are weighted equally), and the reply is also learned as a liked one (rejection-sampling
    # fine-tuning), which moves a small model further in a night than the pair alone
    chosen_score: float = 0.0

    @property
    def chosen_liked(self) -> bool:
        return self.chosen_score > 0


@dataclass
class Rated:
    example: Example
    liked: bool
    group: str


@dataclass
class Drawn:
    """Replies drawn from the serving model: each prompt (chat messages) and its replies."""

    prompts: list[list[dict[str, Any]]] = field(default_factory=list)
    replies: list[list[str]] = field(default_factory=list)


@dataclass
class RewardModel:
    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def score(self, features: torch.Tensor) -> list[float]:
        with torch.no_grad():
            return (((features - self.mean) / self.scale) @ self.weight + self.bias).tolist()


# What the head sees of a reply, each part from the one forward pass: the final and the middle layer's states
# pooled (their mean over the reply, the last, their mean over its opening: the state that chose its first token and
# the next few), the same layers' means over each span of PLACES (how far into a reply a thing is said: a filler
# opening, a first sentence that runs on), the mean of its input embeddings (which words it uses), and its length.
# The middle layer holds more of what a reply says and how than the final one, which is shaped to predict the next
# token. bench/reward_features.py measures each view on the feedback bench's tastes.
Part = Literal["final", "middle", "final by place", "middle by place", "embeddings", "length"]
PARTS: tuple[Part, ...] = ("final", "middle", "final by place", "middle by place", "embeddings", "length")
PLACES = (0, 4, 16, 48)  # spans of a reply's tokens, each from one of these to the next (the last to its end)


@torch.no_grad()
def reply_features(
    model: Any,
    examples: Sequence[Example],
    *,
    batch_size: int,
    max_batch_tokens: int,
    pad_id: int,
    device: Any,
    parts: Sequence[Part] = PARTS,
) -> torch.Tensor:
    """(examples, features): ``parts`` of each reply, side by side."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: examples[i].size)
    rows: list[torch.Tensor] = [torch.empty(0)] * len(examples)
    position = 0
    for group in chunks([examples[i] for i in order], batch_size, max_batch_tokens):
        batch = collate(group, pad_id).to(device)
        states = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            output_hidden_states=True,
            use_cache=False,
            logits_to_keep=1,  # the head reads hidden states: the vocabulary's logits would be a fifth of the work
        ).hidden_states
        features = _parts_of(states, group, parts, model.config.num_hidden_layers // 2).cpu()
        for row in features:
            rows[order[position]] = row
            position += 1
    model.train(was_training)
    return torch.stack(rows) if rows else torch.empty(0, 1)


def _parts_of(
    states: tuple[torch.Tensor, ...], group: list[Example], parts: Sequence[Part], middle: int
) -> torch.Tensor:
    """``parts`` of each reply of a batch, from the model's hidden states (see PARTS)."""
    device = states[0].device
    width = states[0].size(1)
    labels = torch.stack([torch.tensor(_padded(e.labels, width)) for e in group]).to(device)
    reply = (labels != IGNORE_INDEX).float()
    counts = reply.sum(dim=1).clamp(min=1)
    place = torch.arange(width, device=device).unsqueeze(0) - reply.argmax(dim=1, keepdim=True)
    spans = [
        reply * ((place >= low) & (place < high)).float()
        for low, high in zip(PLACES, (*PLACES[1:], width), strict=True)
    ]
    last_index = torch.tensor([_last(e.labels) for e in group], device=device)
    rows = torch.arange(len(group), device=device)

    def mean_over(hidden: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return (hidden * where.unsqueeze(-1)).sum(dim=1) / where.sum(dim=1, keepdim=True).clamp(min=1)

    def pooled(layer: int) -> torch.Tensor:
        hidden = states[layer].float()
        opening = torch.stack([hidden[row, _opening(e.labels)].mean(dim=0) for row, e in enumerate(group)])
        return torch.cat([mean_over(hidden, reply), hidden[rows, last_index], opening], dim=1)

    def by_place(layer: int) -> torch.Tensor:
        hidden = states[layer].float()
        return torch.cat([mean_over(hidden, span) for span in spans], dim=1)

    made = {
        "final": lambda: pooled(-1),
        "middle": lambda: pooled(middle),
        "final by place": lambda: by_place(-1),
        "middle by place": lambda: by_place(middle),
        "embeddings": lambda: mean_over(states[0].float(), reply),
        "length": lambda: counts.log().unsqueeze(-1),
    }
    return torch.cat([made[part]() for part in parts], dim=1)


def _padded(labels: list[int], width: int) -> list[int]:
    return labels + [IGNORE_INDEX] * (width - len(labels))


def _opening(labels: list[int]) -> slice:
    """The positions whose states chose a reply's first tokens: the one before its first, and its first few."""
    scored = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    start = max(0, scored[0] - 1) if scored else len(labels) - 1
    return slice(start, min(start + OPENING, len(labels)))


def _last(labels: list[int]) -> int:
    scored = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    return scored[-1] if scored else len(labels) - 1


def fit(features: torch.Tensor, liked: list[bool], group_of: list[str], l2: float) -> RewardModel:
    """The head: class-weighted logistic loss on every rating plus Bradley-Terry on replies to one prompt
    rated apart, with an L2 penalty, by full-batch L-BFGS on standardized features."""
    torch.manual_seed(0)
    mean = features.mean(dim=0)
    scale = features.std(dim=0).clamp(min=1e-6) if len(features) > 1 else torch.ones_like(mean)
    x = (features - mean) / scale
    y = torch.tensor(liked, dtype=torch.float32)
    good = max(1.0, float(y.sum()))
    bad = max(1.0, float(len(y) - y.sum()))
    weights = torch.where(y > 0, len(y) / (2 * good), len(y) / (2 * bad))
    pairs = prompt_pairs(liked, group_of)
    chosen = torch.tensor([i for i, _ in pairs], dtype=torch.long)
    rejected = torch.tensor([j for _, j in pairs], dtype=torch.long)
    weight = torch.zeros(x.size(1), requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=STEPS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        scores = x @ weight + bias
        loss = (F.binary_cross_entropy_with_logits(scores, y, reduction="none") * weights).mean()
        if pairs:
            loss = loss - F.logsigmoid(scores[chosen] - scores[rejected]).mean()
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return RewardModel(mean=mean, scale=scale, weight=weight.detach(), bias=bias.detach())


def rated_examples(renderer: ChatRenderer, turns: list[RatedTurn]) -> list[Rated]:
    """Rated turns (on balance liked or disliked) as examples, with the prompt group each belongs to."""
    out = []
    for key, members in groups(turns).items():
        for rated in members:
            parts = renderer.completion_parts(rated.turn.prompt, rated.turn.reply) if rated.score else None
            if parts is not None:
                out.append(Rated(renderer.completion(*parts), rated.score > 0, key))
    return out


def ranking(scores: list[float], rated: list[Rated], min_pairs: int) -> float | None:
    """How well ``scores`` rank liked replies above disliked ones: over pairs of replies to one prompt where
    ``min_pairs`` are there, else across all (AUC)."""
    pairs = prompt_pairs([r.liked for r in rated], [r.group for r in rated])
    if len(pairs) >= min_pairs:
        return pair_accuracy(scores, pairs)
    return auc(scores, [r.liked for r in rated])


def train_reward_model(
    featurize: Any, train: list[Rated], val: list[Rated], heldout: list[Rated], settings: RewardModelSettings
) -> tuple[RewardModel | None, RewardCheck]:
    """Fit on the training ratings (the L2 weight chosen by how well it ranks the validation ratings), and check
    the recipe on every rating, each scored by a head fitted without its prompt's (``settings.check_folds``
    folds by prompt): a night's held-out split alone is twenty-odd ratings, whose AUC has a standard error near
    0.13, so that a head that ranks well failed the check as often as not.
    ``featurize`` maps examples to the base model's features."""
    check = RewardCheck(trained_on=len(train), liked=sum(r.liked for r in train))
    check.disliked = check.trained_on - check.liked
    if not check.liked or not check.disliked:
        check.reason = f"nothing to learn: {check.liked} liked and {check.disliked} disliked training replies"
        return None, check
    features = featurize([r.example for r in train])
    liked = [r.liked for r in train]
    group_of = [r.group for r in train]
    others = featurize([r.example for r in val + heldout]) if val or heldout else features[:0]
    val_features = others[: len(val)] if val else None
    best: tuple[float, float, RewardModel] | None = None
    for l2 in L2_GRID:
        model = fit(features, liked, group_of, l2)
        score = ranking(model.score(val_features), val, settings.min_pairs) if val_features is not None else None
        value = -1.0 if score is None else score
        if best is None or value > best[0]:
            best = (value, l2, model)
        if score is None:
            break  # no validation to choose by: the smallest penalty is kept
    assert best is not None
    _, check.l2, model = best
    everyone = train + val + heldout
    folded = out_of_fold_scores(torch.cat([features, others]), everyone, check.l2, settings.check_folds)
    scored = [(score, rated) for score, rated in zip(folded, everyone, strict=True) if score is not None]
    check.folds = settings.check_folds
    check.heldout = len(scored)
    check.heldout_liked = sum(rated.liked for _, rated in scored)
    pairs = prompt_pairs([rated.liked for _, rated in scored], [rated.group for _, rated in scored])
    check.heldout_pairs = len(pairs)
    classes = min(check.heldout_liked, check.heldout - check.heldout_liked)
    if classes < settings.min_per_class and len(pairs) < settings.min_pairs:
        check.reason = (
            f"{check.heldout_liked} liked and {check.heldout - check.heldout_liked} disliked replies and "
            f"{len(pairs)} pairs of them to one prompt; it is judged from {settings.min_per_class} of each class "
            f"or {settings.min_pairs} pairs"
        )
        return model, check
    scores = [score for score, _ in scored]
    check.heldout_auc = auc(scores, [rated.liked for _, rated in scored])
    check.heldout_pair_accuracy = pair_accuracy(scores, pairs)
    by_pairs = len(pairs) >= settings.min_pairs
    measured = check.heldout_pair_accuracy if by_pairs else check.heldout_auc
    assert measured is not None
    held = f"each scored by a head fitted without its prompt ({check.folds} folds)"
    if by_pairs:
        said = f"it ranks {measured:.1%} of {len(pairs)} pairs of a liked and a disliked reply to one prompt right, "
        said += f"{held}, which"
    else:
        said = f"AUC {measured:.3f} on {check.heldout} ratings, {held},"
    check.passed = measured >= settings.min_auc
    verdict = "reaches" if check.passed else "is below"
    check.reason = f"{said} {verdict} the {settings.min_auc:.2f} needed to use its pairs"
    return model, check


def out_of_fold_scores(features: torch.Tensor, rated: list[Rated], l2: float, folds: int) -> list[float | None]:
    """Each rating's score by a head fitted on the other folds' ratings, a prompt's ratings all in one fold (a
    seeded draw); None where the other folds hold one class only."""
    keys = sorted({r.group for r in rated})
    random.Random(0).shuffle(keys)
    fold_of = {key: i % folds for i, key in enumerate(keys)}
    scores: list[float | None] = [None] * len(rated)
    for fold in range(folds):
        inside = [i for i, r in enumerate(rated) if fold_of[r.group] == fold]
        outside = [i for i, r in enumerate(rated) if fold_of[r.group] != fold]
        liked = [rated[i].liked for i in outside]
        if not inside or all(liked) or not any(liked):
            continue
        head = fit(features[outside], liked, [rated[i].group for i in outside], l2)
        for i, score in zip(inside, head.score(features[inside]), strict=True):
            scores[i] = score
    return scores


@torch.no_grad()
def sampled_replies(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    *,
    n: int,
    max_new_tokens: int,
    temperature: float,
    eos_token_ids: list[int],
    pad_id: int,
    device: Any,
    batch_size: int = 8,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
) -> list[list[str]]:
    """``n`` sampled replies to each prompt (token ids), in batches of left-padded prompts; a temperature of 0
    draws the greedy reply (n times the same)."""
    out: list[list[str]] = []
    drawing: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        drawing = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k}
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids, mask = left_padded(chunk, pad_id)
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            repetition_penalty=repetition_penalty,
            num_return_sequences=n if temperature > 0 else 1,
            **drawing,
            eos_token_id=eos_token_ids,
            pad_token_id=pad_id,
        )
        texts = [tokenizer.decode(row[ids.shape[1] :], skip_special_tokens=True).strip() for row in generated]
        if temperature <= 0:  # one greedy reply, n times
            texts = [text for text in texts for _ in range(n)]
        out += [texts[i * n : (i + 1) * n] for i in range(len(chunk))]
    return out


def best_of_n(
    prompts: list[list[dict[str, Any]]],
    replies: list[list[str]],
    score: Any,
) -> list[OnPolicyPair]:
    """For each prompt, the reply the reward model scores highest against the lowest (when they differ).
    ``score`` maps (prompt, reply) pairs to the reward model's scores (None for one that does not fit)."""
    pairs = []
    for prompt, candidates in zip(prompts, replies, strict=True):
        distinct = [reply for reply in dict.fromkeys(candidates) if reply]
        if len(distinct) < 2:
            continue
        scores = score([(prompt, reply) for reply in distinct])
        ranked = sorted(
            ((s, reply) for s, reply in zip(scores, distinct, strict=True) if s is not None and math.isfinite(s)),
            key=lambda pair: pair[0],
        )
        if len(ranked) >= 2 and ranked[-1][0] > ranked[0][0]:
            pairs.append(
                OnPolicyPair(
                    prompt=prompt,
                    chosen=ranked[-1][1],
                    rejected=ranked[0][1],
                    margin=ranked[-1][0] - ranked[0][0],
                    chosen_score=ranked[-1][0],
                )
            )
    return pairs


class RewardStep:
    """The night's reward model on the base model's features, and the best-of-n pairs it makes of what a
    serving model replies to rated prompts, only once its held-out check has passed."""

    def __init__(
        self,
        base: Any,
        tokenizer: Any,
        renderer: ChatRenderer,
        settings: RewardModelSettings,
        *,
        device: Any,
        eos_token_ids: list[int],
        batch_size: int = 8,
        max_batch_tokens: int = 2048,
    ):
        self.base = base
        self.tokenizer = tokenizer
        self.renderer = renderer
        self.settings = settings
        self.device = device
        self.eos = eos_token_ids
        self.pad = tokenizer.pad_token_id
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.model: RewardModel | None = None
        self.check = RewardCheck(reason="not trained")

    def featurize(self, examples: Sequence[Example]) -> torch.Tensor:
        return reply_features(
            self.base, examples, batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens,
            pad_id=self.pad, device=self.device,
        )  # fmt: skip

    def train(self, train: list[RatedTurn], val: list[RatedTurn], heldout: list[RatedTurn]) -> RewardCheck:
        fit_on, choose_by, check_on = (rated_examples(self.renderer, turns) for turns in (train, val, heldout))
        self.model, self.check = train_reward_model(self.featurize, fit_on, choose_by, check_on, self.settings)
        return self.check

    def scores(self, pairs: list[tuple[list[dict[str, Any]], str]]) -> list[float | None]:
        """The reward model's score of each (prompt, reply); None where the reply does not fit."""
        assert self.model is not None
        examples: list[Example | None] = []
        for prompt, reply in pairs:
            parts = self.renderer.completion_parts(prompt, reply)
            examples.append(self.renderer.completion(*parts) if parts is not None else None)
        fitting = [e for e in examples if e is not None]
        values = iter(self.model.score(self.featurize(fitting)) if fitting else [])
        return [next(values) if e is not None else None for e in examples]

    def pairs(self, policy: Any, turns: list[RatedTurn], sampling: SamplingParams | None = None) -> list[OnPolicyPair]:
        """Best-of-n pairs of ``policy``'s replies to the rated prompts of ``turns``; none unless the held-out
        check passed. ``policy`` must not share its layers with the base model (see sample and rank)."""
        return self.rank(self.sample(policy, turns, sampling))

    def sample(self, policy: Any, turns: list[RatedTurn], sampling: SamplingParams | None = None) -> Drawn:
        """``best_of_n`` replies of ``policy`` to each rated prompt of ``turns`` (at most max_prompts, the newest);
        nothing unless the held-out check passed. Drawn at the settings' temperature, within ``sampling``'s
        nucleus and repetition penalty where given (the persona's: members' replies come from there; from the
        whole vocabulary at temperature 1 a small model's replies are often not sentences, and the best of them
        was learned as a liked reply: a night of a direct-answer taste lost the guard's questions at its first
        evaluation). Done apart from rank: where the policy is the base model with an adapter attached by peft,
        the base's own layers carry it, and the features must be taken after."""
        if not self.trusted or self.settings.best_of_n < 2:
            return Drawn()
        prompts = self.prompts_of(turns, self.settings.max_prompts)
        within = sampling.model_copy(update={"temperature": self.settings.temperature}) if sampling else None
        return self.draw(policy, prompts, self.settings.best_of_n, within)

    @property
    def trusted(self) -> bool:
        return self.model is not None and self.check.passed

    def prompts_of(self, turns: list[RatedTurn], limit: int) -> list[list[dict[str, Any]]]:
        """The distinct prompts of ``turns`` that fit the context, newest first, at most ``limit``."""
        prompts: list[list[dict[str, Any]]] = []
        seen: set[str] = set()
        for rated in sorted(turns, key=lambda t: t.turn.at, reverse=True):
            key = repr(rated.turn.prompt)
            if key in seen or self.renderer.completion_parts(rated.turn.prompt, "") is None:
                continue
            seen.add(key)
            prompts.append(rated.turn.prompt)
            if len(prompts) >= limit:
                break
        return prompts

    def draw(
        self, policy: Any, prompts: list[list[dict[str, Any]]], n: int, sampling: SamplingParams | None = None
    ) -> Drawn:
        """``n`` sampled replies of ``policy`` to each prompt, from the settings' seed: two models drawn from
        for the same prompts draw with the same random numbers, which makes their comparison less noisy. Drawn at
        the settings' temperature from the whole vocabulary, or as ``sampling`` (a persona's) says."""
        drawn, ids = Drawn(), []
        for prompt in prompts:
            if (parts := self.renderer.completion_parts(prompt, "")) is not None:
                drawn.prompts.append(prompt)
                ids.append(parts[0])
        if not ids:
            return drawn
        torch.manual_seed(self.settings.seed)
        shape = (
            {"temperature": self.settings.temperature}
            if sampling is None
            else sampling.model_dump(include={"temperature", "top_p", "top_k", "repetition_penalty"})
        )
        drawn.replies = sampled_replies(
            policy, self.tokenizer, ids, n=n, max_new_tokens=self.settings.max_new_tokens, eos_token_ids=self.eos,
            pad_id=self.pad, device=self.device, batch_size=self.batch_size, **shape,
        )  # fmt: skip
        return drawn

    def judge(
        self, prompts: list[list[dict[str, Any]]], candidate: Any, live: tuple[str, Any], sampling: SamplingParams
    ) -> RepliesJudged | None:
        """``judge_samples`` replies of the candidate and of live (a name and the model) to each of ``prompts``,
        drawn as members are served (``sampling``, the persona's: a shift that shows at temperature 1 can be
        gone at 0.3), scored; None unless the model is trusted and two prompts or more fit. Each model is called
        only while it is attached (see ``sample``): ``candidate`` and ``live[1]`` attach it as context managers."""
        n = self.settings.judge_samples if sampling.temperature > 0 else min(1, self.settings.judge_samples)
        if not self.trusted or n < 1:
            return None
        with live[1] as policy:
            live_drawn = self.draw(policy, prompts, n, sampling)
        with candidate as policy:
            candidate_drawn = self.draw(policy, live_drawn.prompts, n, sampling)
        paired = paired_mean_difference(self.like_estimates(candidate_drawn), self.like_estimates(live_drawn))
        if paired is None:
            return None
        return RepliesJudged(
            live=live[0], prompts=len(live_drawn.prompts), samples=n, candidate_like=paired.a, live_like=paired.b,
            se=paired.se,
        )  # fmt: skip

    def like_estimates(self, drawn: Drawn) -> list[float]:
        """For each prompt, the mean of the reward model's like estimate (the logistic of its score) over the
        replies drawn for it; a reply that does not fit counts as 0."""
        drawn_pairs = zip(drawn.prompts, drawn.replies, strict=True)
        flat = [(prompt, reply) for prompt, replies in drawn_pairs for reply in replies]
        scores = iter(self.scores(flat))
        estimates = []
        for replies in drawn.replies:
            values = [next(scores) for _ in replies]
            likes = torch.sigmoid(torch.tensor([v for v in values if v is not None], dtype=torch.float64))
            estimates.append(float(likes.sum()) / max(1, len(values)))
        return estimates

    def rank(self, drawn: Drawn) -> list[OnPolicyPair]:
        """The reward model's best against its worst of each prompt's drawn replies."""
        if not drawn.prompts or not drawn.replies:
            return []
        made = best_of_n(drawn.prompts, drawn.replies, self.scores)
        self.check.pairs = len(made)
        return made
