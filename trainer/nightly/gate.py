"""The gate: a candidate goes live only if it is clearly better on the test split and does not forget.

- its test perplexity must be at most (1 - margin) x the live model's (the live adapter, else the base);
- its general-set perplexity may exceed the base model's by at most ``general_bound`` (a fraction). The
  bound is measured against the base, not the live adapter, so that small losses cannot pile up night
  after night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trainer.nightly.scoring import Scores


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def decide(candidate: Scores, live: Scores, base: Scores, *, margin: float, general_bound: float) -> Decision:
    """Promote or keep; the reasons are the failed checks when kept, the passed ones when promoted."""
    values = (candidate.test_ppl, candidate.general_ppl, live.test_ppl, base.general_ppl)
    if not all(math.isfinite(v) for v in values):
        return Decision(False, ["a perplexity is not a finite number (diverged training or an empty split)"])
    passed: list[str] = []
    failed: list[str] = []
    needed = (1 - margin) * live.test_ppl
    verdict = "beats" if candidate.test_ppl <= needed else "does not beat"
    (passed if candidate.test_ppl <= needed else failed).append(
        f"test perplexity {candidate.test_ppl:.2f} {verdict} {live.name}'s {live.test_ppl:.2f} by the margin of "
        f"{margin:.0%} (needs at most {needed:.2f})"
    )
    allowed = (1 + general_bound) * base.general_ppl
    change = candidate.general_ppl / base.general_ppl - 1
    within = "within" if candidate.general_ppl <= allowed else "beyond"
    (passed if candidate.general_ppl <= allowed else failed).append(
        f"general-set perplexity {candidate.general_ppl:.2f} is {change:+.1%} from the base model's "
        f"{base.general_ppl:.2f}, {within} the bound of +{general_bound:.0%}"
    )
    return Decision(not failed, failed or passed)
