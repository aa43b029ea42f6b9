"""The gate: a candidate goes live only if members would like it better and it does not forget.

- Judged by ratings, when enough held-out rated replies are there (evaluation.min_heldout_ratings, and
  min_heldout_per_class of both liked and disliked among them): the candidate's implied reward,
  beta * (log p - log p_base) of each reply, must rank liked replies above disliked ones (AUC) better than
  the live model's on the very same replies, by ``reward_margin_se`` standard errors of the paired
  difference (DeLong's test; an AUC from 50 ratings moves by several hundredths from one split to the next,
  so an absolute margin would sit inside the noise), and by ``reward_margin`` at least. Where the held-out
  ratings hold ``min_heldout_pairs`` pairs of a liked and a disliked reply to one prompt (a /retry, a
  comparison, a question asked again), those pairs judge instead: how often the liked one's implied reward is
  the higher, candidate against live, with a standard error clustered by prompt. An implied reward is only
  defined up to a constant per prompt (DPO's reward), so an AUC across prompts can hide a candidate that
  learned which of two replies members prefer. Once both rank the
  held-out ratings almost perfectly (``reward_saturated``), no better candidate can show there: one that is not
  significantly worse passes, and members decide (``Decision.members_decide``: the canary must be liked at least
  as well as live; a target without a canary keeps what it has).
  Without enough ratings, by perplexity instead: its test perplexity must be at most (1 - margin) x the live
  model's (the live adapter, else the base).
- Judged by its own replies, where the night's reward model passed its held-out check (reward.py): replies
  drawn from the candidate and from live alike (as members are served) for the held-out and validation prompts,
  none of which a step was trained on, scored by the reward model; the
  candidate's mean like estimate must beat live's by ``reward_margin_se`` standard errors of the mean per-prompt
  difference. This comes first: it measures what members will be sent, where an implied reward measures how the
  model scores replies it no longer has to write (a candidate can rank held-out ratings well and reply as before).
- The general guard (guard.py) must hold: its perplexity on the prose may exceed the base model's by at most
  ``general_bound`` (a fraction), and it may lose at most ``questions_may_lose`` of the base model's right
  answers. Both are measured against the base, not the live adapter, so that small losses cannot pile up
  night after night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trainer.nightly.reward import RepliesJudged
from trainer.nightly.scoring import Scores
from trainer.nightly.stats import RankingDifference, paired_auc_difference, paired_pair_difference
from trainer.settings import EvaluationSettings


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    # the held-out ratings could not tell candidate and live apart: only members' ratings may promote it
    members_decide: bool = False
    # kept, but ahead of live on the measure that judged it (inside the noise) and within the general guard:
    # worth going on from (finetune.carry_unproven)
    ahead: bool = False

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def judged_by_ratings(candidate: Scores, settings: EvaluationSettings) -> bool:
    liked = sum(candidate.liked) if candidate.liked else None
    enough_of_each = liked is None or min(liked, candidate.rated - liked) >= settings.min_heldout_per_class
    return candidate.reward_auc is not None and candidate.rated >= settings.min_heldout_ratings and enough_of_each


def decide(
    candidate: Scores,
    live: Scores,
    base: Scores,
    settings: EvaluationSettings,
    replies: RepliesJudged | None = None,
) -> Decision:
    """Promote or keep; the reasons are the failed checks when kept, the passed ones when promoted. ``replies``:
    the reward model's judgment of both models' own replies, which comes first where there is one."""
    values = (candidate.test_ppl, candidate.general_ppl, live.test_ppl, base.general_ppl)
    if not all(math.isfinite(v) for v in values):
        return Decision(False, ["a perplexity is not a finite number (diverged training or an empty split)"])
    by_pairs = len(candidate.pairs) >= settings.min_heldout_pairs
    by_ratings = replies is None and (by_pairs or judged_by_ratings(candidate, settings))
    paired = _paired_difference(candidate, live, by_pairs) if by_ratings else None
    members_decide = paired is not None and _only_members_can_tell(paired, settings)
    if replies is not None:
        first = _replies(replies, settings)
        lead = replies.difference.difference
    elif paired is not None:
        first = _paired(candidate, live, paired, settings, members_decide, by_pairs)
        lead = paired.difference
    elif by_ratings:
        first = _unpaired(candidate, live, settings)
        lead = (candidate.reward_auc or 0.5) - (0.5 if live.reward_auc is None else live.reward_auc)
    else:
        first = _perplexity(candidate, live, settings.margin)
        lead = live.test_ppl - candidate.test_ppl
    guard = [_prose(candidate, base, settings.general_bound), _questions(candidate, base, settings)]
    failed = [reason for passed, reason in [first, *guard] if not passed]
    return Decision(
        not failed,
        failed or [reason for _, reason in [first, *guard]],
        members_decide=members_decide and not failed,
        ahead=bool(failed) and lead > 0 and all(passed for passed, _ in guard),
    )


def _paired_difference(candidate: Scores, live: Scores, by_pairs: bool) -> RankingDifference | None:
    """The candidate's AUC (or pair accuracy) against live's on the same held-out replies (live's rewards all 0
    when live is the base model, whose implied reward is 0 by definition)."""
    live_rewards = live.rewards if len(live.rewards) == len(candidate.rewards) else [0.0] * len(candidate.rewards)
    if by_pairs:
        return paired_pair_difference(candidate.rewards, live_rewards, candidate.pairs, candidate.pair_prompts)
    return paired_auc_difference(candidate.rewards, live_rewards, candidate.liked) if candidate.liked else None


def _better(paired: RankingDifference, settings: EvaluationSettings) -> bool:
    return paired.difference > 0 and paired.difference >= max(
        settings.reward_margin, settings.reward_margin_se * paired.se
    )


def _only_members_can_tell(paired: RankingDifference, settings: EvaluationSettings) -> bool:
    """Both AUCs at ``reward_saturated`` or above, the candidate not clearly better and not significantly worse."""
    saturated = min(paired.a, paired.b) >= settings.reward_saturated
    not_worse = paired.difference > -settings.reward_margin_se * paired.se or paired.difference == 0
    return saturated and not_worse and not _better(paired, settings)


def _unpaired(candidate: Scores, live: Scores, settings: EvaluationSettings) -> tuple[bool, str]:
    assert candidate.reward_auc is not None
    live_auc = 0.5 if live.reward_auc is None else live.reward_auc
    needed = live_auc + settings.reward_margin
    ok = candidate.reward_auc >= needed
    return ok, (
        f"on {candidate.rated} held-out ratings, its implied reward ranks liked above disliked replies with an AUC "
        f"of {candidate.reward_auc:.3f}, {'at least' if ok else 'below'} {live.name}'s {live_auc:.3f} plus the margin "
        f"of {settings.reward_margin:.3f} (needs {needed:.3f})"
    )


def _paired(
    candidate: Scores,
    live: Scores,
    paired: RankingDifference,
    settings: EvaluationSettings,
    members_decide: bool,
    by_pairs: bool,
) -> tuple[bool, str]:
    liked = sum(candidate.liked)
    spread = f"{paired.z:.2f} standard errors" if paired.se > 0 else "with a standard error of 0"
    if by_pairs:
        prompts = len(set(candidate.pair_prompts))
        said = (
            f"on the same {len(candidate.pairs)} held-out pairs of a liked and a disliked reply to one prompt "
            f"({prompts} prompts), its implied reward puts the liked one first in {paired.a:.1%} against "
            f"{live.name}'s {paired.b:.1%}: {paired.difference:+.3f}, {spread} (clustered by prompt)"
        )
    else:
        said = (
            f"on the same {candidate.rated} held-out ratings ({liked} liked, {candidate.rated - liked} disliked), "
            f"its implied reward ranks liked above disliked replies with an AUC of {paired.a:.3f} against "
            f"{live.name}'s {paired.b:.3f}: {paired.difference:+.3f}, {spread} (DeLong)"
        )
    if members_decide:
        return True, (
            f"{said}: both at least {settings.reward_saturated:.2f}, where no better candidate can show, and it is "
            "not significantly worse: members' ratings decide"
        )
    ok = _better(paired, settings)
    return ok, f"{said}, {'beyond' if ok else 'within'} the {settings.reward_margin_se:.2f} needed"


def _replies(judged: RepliesJudged, settings: EvaluationSettings) -> tuple[bool, str]:
    paired = judged.difference
    spread = f"{paired.z:.2f} standard errors" if paired.se > 0 else "with a standard error of 0"
    ok = _better(paired, settings)
    return ok, (
        f"its own replies to {judged.prompts} held-out and validation prompts ({judged.samples} each), scored by the "
        f"night's reward model, read as liked {paired.a:.1%} of the time against {judged.live}'s {paired.b:.1%}: "
        f"{paired.difference:+.3f}, {spread} (paired by prompt), {'beyond' if ok else 'within'} the "
        f"{settings.reward_margin_se:.2f} needed"
    )


def _perplexity(candidate: Scores, live: Scores, margin: float) -> tuple[bool, str]:
    needed = (1 - margin) * live.test_ppl
    ok = candidate.test_ppl <= needed
    liked = f", {sum(candidate.liked)} liked" if candidate.liked else ""
    too_few = f"too few held-out ratings to judge by ({candidate.rated}{liked}); " if candidate.rated else ""
    return ok, (
        f"{too_few}test perplexity {candidate.test_ppl:.2f} {'beats' if ok else 'does not beat'} {live.name}'s "
        f"{live.test_ppl:.2f} by the margin of {margin:.0%} (needs at most {needed:.2f})"
    )


def _prose(candidate: Scores, base: Scores, bound: float) -> tuple[bool, str]:
    allowed = (1 + bound) * base.general_ppl
    change = candidate.general_ppl / base.general_ppl - 1
    ok = candidate.general_ppl <= allowed
    return ok, (
        f"general-prose perplexity {candidate.general_ppl:.2f} is {change:+.1%} from the base model's "
        f"{base.general_ppl:.2f}, {'within' if ok else 'beyond'} the bound of +{bound:.0%}"
    )


def _questions(candidate: Scores, base: Scores, settings: EvaluationSettings) -> tuple[bool, str]:
    right = [i for i, ok in enumerate(base.answers_right) if ok]
    lost = [i for i in right if i >= len(candidate.answers_right) or not candidate.answers_right[i]]
    ok = len(lost) <= settings.questions_may_lose
    allowed = f" (may lose {settings.questions_may_lose})" if settings.questions_may_lose else ""
    return ok, (
        f"general questions: keeps {len(right) - len(lost)} of the base model's {len(right)} right answers{allowed}"
        + (f", loses question{'s' if len(lost) > 1 else ''} {', '.join(str(i + 1) for i in lost)}" if lost else "")
    )
