"""Fine-tuning a model on examples, as `trainer finetune` and `trainer nightly` both do, top to bottom: the
objective's parts with their examples, their batches, the optimizer and the schedule, the validation, the loop.

FinetuneSettings decide the optimizer, the schedule, the batches and the evaluations; the caller decides what a
better model, or a checkpoint, is written as (LoopHooks). A step's loss is the weighted sum of its parts' means
(mixture.py): the next-token loss on the examples alone or, given ratings (PreferenceData), with DPO on pairs of
replies and KTO on replies rated on their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from trainer.core import distributed
from trainer.core.batches import ExampleBatches, chunks
from trainer.core.distributed import Placement
from trainer.core.evaluation import mean_loss, reply_logprobs
from trainer.core.examples import Example, PairExample, RatedExample
from trainer.core.loop import LoopHooks, LoopResult, LoopSettings, Snapshot, Training, adamw, kept, train
from trainer.core.lr_schedule import warmup_cosine_schedule
from trainer.core.mixture import MixedBatches, Mixture, ScaledBatch, Weighted, scaled
from trainer.core.objectives import KTO, ExampleObjective, NextToken, Retain, SigmoidDPO, kto_class_weights
from trainer.nightly.stats import Pair, auc, pair_accuracy
from trainer.settings import FinetuneSettings, PreferenceSettings


class FinetuneResult(LoopResult):
    train_examples: int
    val_examples: int
    # preference data trained on (DPO pairs, KTO's rated replies), and held out for validation
    train_pairs: int = 0
    train_rated: int = 0
    val_pairs: int = 0
    val_rated: int = 0
    # what the kept step was chosen by ("preference": the validation ratings' implied-reward AUC, its best_val
    # being 1 - AUC; "pairs": the validation pairs' accuracy, best_val 1 - accuracy; "loss": the validation
    # loss), and that AUC or accuracy
    selected_by: str = "loss"
    val_preference_auc: float | None = None
    val_pair_accuracy: float | None = None
    # KTO's lambda_D and lambda_U as trained with
    kto_desirable_weight: float = 1.0
    kto_undesirable_weight: float = 1.0
    # the adapter the fine-tune continued ("community@3"), or None for a fresh one; and why not, where it could not
    continued_from: str | None = None
    fresh_because: str = ""
    # every step the fine-tune could keep went beyond its guards (the one kept is the least beyond): no candidate
    beyond_guard: bool = False


@dataclass
class PreferenceData:
    """Members' ratings as training data, with the reference model's log-probabilities already filled in."""

    settings: PreferenceSettings
    pairs: list[PairExample] = field(default_factory=list)
    rated: list[RatedExample] = field(default_factory=list)
    val_pairs: list[PairExample] = field(default_factory=list)
    val_rated: list[RatedExample] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pairs or self.rated)

    def val_ratings(self) -> tuple[list[Example], list[float], list[bool]]:
        """The validation replies (rated ones, and both of each pair) with their reference log-probability and
        whether they were liked (the chosen of a pair counts as liked)."""
        rows: list[Example] = []
        refs: list[float] = []
        liked: list[bool] = []
        for rated in self.val_rated:
            rows.append(rated.reply)
            refs.append(rated.ref_reply)
            liked.append(rated.desirable)
        for pair in self.val_pairs:
            rows += [pair.chosen, pair.rejected]
            refs += [pair.ref_chosen, pair.ref_rejected]
            liked += [True, False]
        return rows, refs, liked

    def val_pair_positions(self) -> list[Pair]:
        """Where each validation pair's chosen and rejected reply stand in val_ratings()."""
        offset = len(self.val_rated)
        return [(offset + 2 * k, offset + 2 * k + 1) for k in range(len(self.val_pairs))]

    def selects_by_pairs(self) -> bool:
        """Whether the kept step is chosen by the validation pairs: asked for, and enough pairs."""
        return self.settings.select_by == "preference" and len(self.val_pairs) >= self.settings.select_min_pairs

    def selects(self) -> bool:
        """Whether the kept step is chosen by the validation ratings: asked for, and enough pairs or enough of
        each class."""
        liked = self.val_ratings()[2]
        least = min(sum(liked), len(liked) - sum(liked))
        enough = least >= self.settings.select_min_per_class
        return self.selects_by_pairs() or (self.settings.select_by == "preference" and enough)

    def selection_noise(self) -> float:
        """How far apart two steps' validation scores may be and still not be told apart: ``select_later_within_se``
        standard errors of the score the kept step is chosen by, with no difference between steps (pair accuracy:
        a binomial's at 1/2; AUC: the Mann-Whitney statistic's, (n_liked + n_disliked + 1) / (12 n_liked
        n_disliked)); 0 where the ratings do not choose the step."""
        if not self.selects():
            return 0.0
        if self.selects_by_pairs():
            se = 0.5 / math.sqrt(len(self.val_pairs))
        else:
            liked = self.val_ratings()[2]
            good, bad = sum(liked), len(liked) - sum(liked)
            se = math.sqrt((good + bad + 1) / (12 * good * bad))
        return self.settings.select_later_within_se * se

    def kto_weights(self) -> tuple[float, float]:
        """KTO's lambda_D and lambda_U: the settings', or from the training replies' counts."""
        if self.settings.kto_class_weights == "fixed":
            return self.settings.kto_desirable_weight, self.settings.kto_undesirable_weight
        liked = sum(r.desirable for r in self.rated)
        return kto_class_weights(liked, len(self.rated) - liked, self.settings.kto_class_ratio)


class StepGuard(Protocol):
    """Something the model must not lose while it learns (general prose, facts it knew): a step beyond any of a
    fine-tune's guards is never the one kept."""

    def beyond(self, model: torch.nn.Module, batching: Batching) -> float:
        """0 when ``model`` holds the guard; else how far beyond it (the further, the larger)."""
        ...


@dataclass(frozen=True)
class ProseBound:
    """Text of another kind than the training data, and how far the model's perplexity on it may rise above the
    base model's (``base_loss``, its mean token loss there)."""

    windows: list[Example]
    base_loss: float
    bound: float  # a fraction: perplexity at most (1 + bound) x the base model's

    def exceeded_by(self, loss: float) -> float:
        """How far ``loss`` (a mean token loss on the windows) is beyond the bound, as a perplexity ratio; 0 within,
        infinitely far for a diverged model (NaN)."""
        if not math.isfinite(loss):
            return math.inf
        return max(0.0, math.exp(min(loss - self.base_loss, 50.0)) - (1 + self.bound))

    def beyond(self, model: torch.nn.Module, batching: Batching) -> float:
        return self.exceeded_by(prose_loss(model, self.windows, batching))


@dataclass
class FinetuneData:
    """What a fine-tune learns from: examples (the next-token part) and, when there are any, members' ratings;
    ``pad_id`` pads their batches. No step beyond one of ``guards`` is kept."""

    train: list[Example]
    val: list[Example]
    pad_id: int
    preference: PreferenceData | None = None
    guards: list[StepGuard] = field(default_factory=list)
    # examples learned beside the rest so that something is not forgotten (the base model's own answers), with
    # their weight in the step's loss; never validated on
    retain: list[Example] = field(default_factory=list)
    retain_weight: float = 1.0


@dataclass(frozen=True)
class Part:
    """One objective of the fine-tune, its weight in the step's loss, and the examples it trains and validates on."""

    objective: ExampleObjective
    weight: float
    train: Sequence[Any]
    val: Sequence[Any]


def fine_tune(
    model: torch.nn.Module,
    data: FinetuneData,
    settings: FinetuneSettings,
    placement: Placement,
    *,
    label: str,
    grad_accum: int = 1,
    progress: bool = True,
    hooks: LoopHooks | None = None,
    resume: Snapshot | None = None,
) -> FinetuneResult:
    """Train the model's trainable parameters (all of them, or a LoRA adapter's), the run named ``label``. A step
    takes ``settings.batch_size * grad_accum`` examples of each part, in micro-batches within
    ``settings.max_batch_tokens``; the validation loss is measured at the start and every ``settings.eval_every``
    steps, and training stops after ``settings.patience`` evaluations without a better one."""
    hooks = hooks or LoopHooks()
    parts = objective_parts(data)
    batching = Batching(settings, grad_accum, data.pad_id, placement)
    batches = train_batches(parts, batching)
    total = total_steps(batches.steps_per_epoch, settings)
    optimizer = adamw(model, settings.learning_rate, settings.weight_decay, placement.device)
    scheduler = warmup_cosine_schedule(optimizer, min(settings.warmup_steps, total - 1), total, settings.min_lr_ratio)
    forward = distributed.data_parallel(model, placement)
    validate = validator(model, forward, parts, data.preference, batching)
    within = data.preference.selection_noise() if data.preference else 0.0
    if data.guards:
        # a run that may not keep its start scores it first (unless it resumes), and guards nothing about it
        candidate_start = settings.keep_start or resume is not None
        validate = within_guards(
            validate, model, data.guards, batching, start_scored_first=not candidate_start, keep_later_within=within
        )
    training = Training(model, forward, Mixture(), batches, validate, optimizer, scheduler)
    looping = loop_settings(settings, total, label, progress, hooks, keep_later_within=within)
    result = train(training, looping, placement, hooks, resume)
    return finetune_result(result, data)


def objective_parts(data: FinetuneData) -> list[Part]:
    """The next-token loss on the examples; given ratings, DPO on their pairs and KTO on their lone replies too;
    and the next-token loss on the examples to retain."""
    retain = [Part(Retain(), data.retain_weight, data.retain, [])] if data.retain and data.retain_weight else []
    if not data.preference:
        return [Part(NextToken(), 1.0, data.train, data.val), *retain]
    ratings, p = data.preference, data.preference.settings
    return [
        Part(NextToken(), p.next_token_weight, data.train, data.val),
        Part(SigmoidDPO(p.beta), p.dpo_weight, ratings.pairs, ratings.val_pairs),
        Part(KTO(p.beta, *ratings.kto_weights()), p.kto_weight, ratings.rated, ratings.val_rated),
        *retain,
    ]


@dataclass(frozen=True)
class Batching:
    """How the parts' examples become batches: a step takes ``settings.batch_size * grad_accum`` examples of each
    part, in micro-batches of at most ``settings.batch_size`` examples and ``settings.max_batch_tokens`` padded
    tokens, each process its share."""

    settings: FinetuneSettings
    grad_accum: int
    pad_id: int
    placement: Placement

    def source(self, part: Part) -> ExampleBatches:
        """The part's training examples, epoch after epoch."""
        return ExampleBatches(
            part.train,
            batch_size=self.settings.batch_size * self.grad_accum,
            micro_batch_size=self.settings.batch_size,
            max_batch_tokens=self.settings.max_batch_tokens,
            seed=self.settings.seed,
            pad_id=self.pad_id,
            rank=self.placement.rank,
            world_size=self.placement.world_size,
            collate=part.objective.collate,
        )

    def evaluation(self, part: Part) -> list[Any]:
        """This process's share of the part's validation examples, every one once, batched by size."""
        mine = part.val[self.placement.rank :: self.placement.world_size]
        ordered = sorted(mine, key=lambda e: e.size)
        groups = chunks(ordered, self.settings.batch_size, self.settings.max_batch_tokens)
        return [part.objective.collate(group, self.pad_id) for group in groups]


def train_batches(parts: list[Part], batching: Batching) -> MixedBatches:
    """Every part's training examples, stepped together (a part without any is left out)."""
    return MixedBatches([Weighted(part.objective, part.weight, batching.source(part)) for part in parts if part.train])


def val_batches(parts: list[Part], batching: Batching) -> list[ScaledBatch]:
    """This process's share of every part's validation examples, scaled as a step's micro-batches are."""
    return scaled([Weighted(part.objective, part.weight, batching.evaluation(part)) for part in parts])


def total_steps(steps_per_epoch: int, settings: FinetuneSettings) -> int:
    """The epochs' optimizer steps, at most settings.max_steps (when set)."""
    total = steps_per_epoch * settings.epochs
    return min(total, settings.max_steps) if settings.max_steps else total


def validator(
    model: torch.nn.Module,
    forward: torch.nn.Module,
    parts: list[Part],
    preference: PreferenceData | None,
    batching: Batching,
) -> Callable[[], float]:
    """The mixture's validation loss over every process's share of each part's validation examples or, when the
    validation ratings choose the kept step, 1 - their AUC or pair accuracy (lower is better, as with a loss)."""
    if preference is not None and preference.selects():
        return rating_validator(model, preference, batching)
    placement = batching.placement

    def validate() -> float:
        batches = val_batches(parts, batching)
        return mean_loss(
            forward, batches, Mixture(), placement.device, placement=placement, autocast=placement.autocast
        )

    return validate


# a step beyond a guard scores this much worse than any step within them (a loss, or 1 - AUC, is far below)
BEYOND_GUARD = 1e6


def within_guards(
    validate: Callable[[], float],
    model: torch.nn.Module,
    guards: list[StepGuard],
    batching: Batching,
    start_scored_first: bool = False,
    keep_later_within: float = 0.0,
) -> Callable[[], float]:
    """``validate``, except that a step beyond any of the guards scores worse than any step within them all (the
    further beyond, the worse): the step kept is the best one that holds every guard. The guards cost more than
    the validation (greedy answers, a pass over the prose), so a step that would not be kept anyway (its score no
    better than the best so far, nor within ``keep_later_within`` of it: LoopSettings') is not checked against
    them: the step kept is the same. With
    ``start_scored_first``, the first call scores a start that may not be kept (LoopSettings.keep_start): its
    score is returned as it is, neither guarded nor one a step must beat."""
    best = math.inf
    start_pending = start_scored_first

    def guarded() -> float:
        nonlocal best, start_pending
        score = validate()
        if start_pending:
            start_pending = False
            return score
        if not kept(score, best, keep_later_within):
            return score
        beyond = 0.0
        for guard in guards:
            beyond += guard.beyond(model, batching)
            if beyond:  # the step is not kept whatever the others say: spare their cost
                score = BEYOND_GUARD * (1 + min(beyond, BEYOND_GUARD))
                break
        best = min(best, score)
        return score

    return guarded


def prose_loss(model: torch.nn.Module, windows: list[Example], batching: Batching) -> float:
    """The model's mean token loss on the prose windows (this process's share of them)."""
    placement = batching.placement
    mine = windows[placement.rank :: placement.world_size]
    groups = chunks(mine, batching.settings.batch_size, batching.settings.max_batch_tokens)
    batches = scaled([Weighted(NextToken(), 1.0, [NextToken().collate(group, batching.pad_id) for group in groups])])
    return mean_loss(model, batches, Mixture(), placement.device, placement=placement, autocast=placement.autocast)


def rating_validator(model: torch.nn.Module, preference: PreferenceData, batching: Batching) -> Callable[[], float]:
    """1 - the AUC of the validation replies' implied reward (liked above disliked), or, given enough validation
    pairs, 1 - their accuracy, with ties broken towards the wider margin (preference_score, pair_score): the step
    members' ratings favour is kept."""
    settings = batching.settings

    def validate() -> float:
        rows, refs, liked = preference.val_ratings()
        logps = reply_logprobs(
            model, rows, batch_size=settings.batch_size, max_batch_tokens=settings.max_batch_tokens,
            pad_id=batching.pad_id, device=batching.placement.device,
        )  # fmt: skip
        rewards = [policy - ref for policy, ref in zip(logps, refs, strict=True)]
        if preference.selects_by_pairs():
            return 1 - pair_score(rewards, preference.val_pair_positions())
        return 1 - preference_score(rewards, liked)

    return validate


def pair_score(rewards: list[float], pairs: list[Pair]) -> float:
    """How often a pair's liked reply has the higher implied reward (0.5 without pairs), plus preference_score's
    tie-break below its smallest step: how far the liked replies' reward is above their pair's other, on average."""
    value = pair_accuracy(rewards, pairs)
    if value is None:
        return 0.5
    margin = sum(rewards[liked] - rewards[other] for liked, other in pairs) / len(pairs)
    return value + pair_step(len(pairs)) / 2 * margin / (1 + abs(margin))


def pair_step(pairs: int) -> float:
    """The smallest difference between two accuracies on ``pairs`` pairs (a tie counts half a pair)."""
    return 0.5 / pairs


def preference_score(rewards: list[float], liked: list[bool]) -> float:
    """The AUC of the implied rewards (liked above disliked; 0.5 without both classes), plus a tie-break below
    its smallest step: how far the liked replies' mean reward is above the disliked ones'. A small validation set
    soon ranks every pair right (AUC 1.0) and then every later step ties with the first that did; without the
    tie-break the first was kept and the night's later steps thrown away (a night of 16 steps kept step 4 at the
    same AUC as steps 8 to 16). With it, a later step that ranks the ratings as well but separates them further
    is kept."""
    value = auc(rewards, liked)
    if value is None:
        return 0.5
    good = [r for r, y in zip(rewards, liked, strict=True) if y]
    bad = [r for r, y in zip(rewards, liked, strict=True) if not y]
    margin = sum(good) / len(good) - sum(bad) / len(bad)
    # two AUCs differ by at least one step; half a step times a value in (-1, 1) never outranks a better AUC
    return value + auc_step(len(good), len(bad)) / 2 * margin / (1 + abs(margin))


def auc_step(liked: int, disliked: int) -> float:
    """The smallest difference between two AUCs of ``liked`` x ``disliked`` pairs (a tie counts half a pair)."""
    return 0.5 / (liked * disliked)


def loop_settings(
    settings: FinetuneSettings, total: int, label: str, progress: bool, hooks: LoopHooks, keep_later_within: float = 0.0
) -> LoopSettings:
    return LoopSettings(
        keep_later_within=keep_later_within,
        label=label,
        total_steps=total,
        grad_clip=settings.grad_clip,
        eval_every=settings.eval_every,
        patience=settings.patience,
        keep_start=settings.keep_start,
        checkpoint_every=settings.checkpoint_every if hooks.save_checkpoint is not None else None,
        progress=progress,
    )


def finetune_result(result: LoopResult, data: FinetuneData) -> FinetuneResult:
    """The loop's result, with what was trained on and, given ratings, how the kept step was chosen."""
    beyond = result.best_val_loss >= BEYOND_GUARD
    # the kept step's validation score, where it is one (not a guard's penalty, nor infinite)
    scored = math.isfinite(result.best_val_loss) and not beyond
    counts: dict[str, Any] = {"beyond_guard": beyond}
    if data.preference:
        preference = data.preference
        counts |= {
            "train_pairs": len(preference.pairs),
            "train_rated": len(preference.rated),
            "val_pairs": len(preference.val_pairs),
            "val_rated": len(preference.val_rated),
        }
        counts["kto_desirable_weight"], counts["kto_undesirable_weight"] = preference.kto_weights()
        if preference.selects_by_pairs():
            step = pair_step(len(preference.val_pairs))
            # the kept step's accuracy, without pair_score's tie-break (less than half a step)
            counts["selected_by"] = "pairs"
            counts["val_pair_accuracy"] = round((1 - result.best_val_loss) / step) * step if scored else None
        elif preference.selects():
            liked = preference.val_ratings()[2]
            step = auc_step(sum(liked), len(liked) - sum(liked))
            # the kept step's AUC, without preference_score's tie-break (less than half a step)
            counts["selected_by"] = "preference"
            counts["val_preference_auc"] = round((1 - result.best_val_loss) / step) * step if scored else None
    return FinetuneResult(**result.model_dump(), train_examples=len(data.train), val_examples=len(data.val), **counts)
