"""Model profiles: the memory and sampling settings that suit a model, chosen by the model's name.

A setting the operator gave (YAML or environment) always wins; a profile fills only the settings left unset.
Torch-free, like brain.settings, which applies the profile when the settings load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# the offline default's alias, its hub id and a local directory of it all end so
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"

ProfileName = Literal["small", "capable"]


@dataclass(frozen=True)
class ModelProfile:
    name: ProfileName
    # memory.*
    max_turns: int
    summaries: bool
    fold_every_turns: int
    # model.dry.* (llama.cpp's DRY; multiplier 0: off)
    dry_multiplier: float
    dry_base: float
    dry_allowed_length: int
    dry_penalty_last_n: int
    dry_sequence_breakers: tuple[str, ...]
    dry_reply_only: bool
    summary: str  # what the profile holds and why, for `brain config`

    def memory_values(self) -> dict[str, object]:
        return {"max_turns": self.max_turns, "summaries": self.summaries, "fold_every_turns": self.fold_every_turns}

    def dry_values(self) -> dict[str, object]:
        return {
            "multiplier": self.dry_multiplier,
            "base": self.dry_base,
            "allowed_length": self.dry_allowed_length,
            "penalty_last_n": self.dry_penalty_last_n,
            "sequence_breakers": list(self.dry_sequence_breakers),
            "reply_only": self.dry_reply_only,
        }


# What the benches found for the 135M default model (bench/recall.py, bench/loops.py; their figures are in
# bench/results and the README's "Model profiles"): with more than one exchange in its prompt it copies its own
# recent replies, so it gets a one-exchange window; its summaries are mostly invented and removing them changed no
# recall probe, so none are written; it loops (a line or a phrase dozens of times), which DRY stops. Its loops run
# over lines ("2. La Rambla: La Rambla is ..."), so only a new line breaks a repeat, not llama.cpp's ':', '"' and
# '*' as well; and DRY looks at the reply alone: over the whole context it penalised quoting a fact the member
# told ("Your sister is called Olga" became "... Elena"), and recall of facts told one exchange earlier fell. The
# guard's questions are answered alike with and without it.
SMALL = ModelProfile(
    name="small",
    max_turns=2,
    summaries=False,
    fold_every_turns=8,
    dry_multiplier=0.8,
    dry_base=1.75,
    dry_allowed_length=2,
    dry_penalty_last_n=-1,
    dry_sequence_breakers=("\n",),
    dry_reply_only=True,
    summary="the small default model: a one-exchange window, no summaries (they were invented), DRY on",
)

# A capable chat model follows a whole conversation and writes faithful summaries; it rarely loops, so DRY is
# left off as in llama.cpp's server.
CAPABLE = ModelProfile(
    name="capable",
    max_turns=24,
    summaries=True,
    fold_every_turns=8,
    dry_multiplier=0.0,
    dry_base=1.75,
    dry_allowed_length=2,
    dry_penalty_last_n=-1,
    dry_sequence_breakers=("\n", ":", '"', "*"),  # llama.cpp's
    dry_reply_only=False,
    summary="a capable chat model: a 24-turn window, a summary folded every 8 turns that leave it, DRY off",
)

PROFILES: dict[ProfileName, ModelProfile] = {"small": SMALL, "capable": CAPABLE}


def choose_profile(model_name: str, requested: str = "auto") -> tuple[ModelProfile, str]:
    """The profile for ``model_name`` and why: the one named in model.profile, else by the model."""
    if requested != "auto":
        return PROFILES[requested], f"model.profile is '{requested}'"  # type: ignore[index]
    if model_name.strip().rstrip("/\\").replace("\\", "/").split("/")[-1].lower() == DEFAULT_MODEL_NAME:
        return SMALL, f"model.name '{model_name}' is the small default model"
    return CAPABLE, f"model.name '{model_name}' is not the small default model"
