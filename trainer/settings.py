"""The trainer's settings: the section ``trainer`` of the one settings object (brain/settings.py composes it).

Only pydantic here, so that the root can import it without a cycle. Environment variables keep the root's
nesting, for example ``OWNCHAT_TRAINER__CANARY__SHARE=0.1`` or ``OWNCHAT_TRAINER__FINETUNE__R=16``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FinetuneSettings(BaseModel):
    """The nightly LoRA fine-tune of each target (the community, and each user with enough turns)."""

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    # LoRA dropout: random masks on every adapted layer's input, 30 % of a LoRA step's time on a CPU (under bf16
    # autocast, the default model, 2 cores) for a regularizer a night of 16 steps on fresh data does not need (the
    # feedback bench's tastes were learned without it: README, "Nightly personalization"); a larger night may want it
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # module names to adapt; "all-linear" is every linear layer but the output head, and empty peft's default
    # for the architecture (q_proj and v_proj for Llama). A taste is a matter of style and wording, which an
    # adapter on the attention's queries and values alone barely moves: on the default model, 16 steps of the
    # same liked replies took one taste from 22 % to 32 % on q/v (r 8) and further on every linear layer (r 16);
    # see trainer/README.md, "What an adapter can learn"
    target_modules: list[str] = ["all-linear"]
    # where a night's adapter starts: from the target's own live adapter ("live"), so that what earlier nights
    # learned is kept and each night adds to it (the general guard is measured against the base model, so drift
    # cannot pile up unseen), or from a fresh adapter every night ("fresh"). A live adapter of another shape
    # (rank, modules) is not continued: that night starts fresh and says so
    start_from: Literal["live", "fresh"] = "live"
    # with start_from "live": a candidate the gate kept out only for want of evidence (ahead of live on the
    # measure that judged it, but inside the noise, and within the general guard) is what the next night goes on
    # from, while the same version serves, so that nights add up before members' ratings can tell, as iterative
    # DPO trains each round from the last. Where likes are rare the gate's held-out data is thin for several
    # nights, and a night that starts again from what serves learns only what one night can (README, "Nightly
    # personalization")
    carry_unproven: bool = True
    # keep the best step that holds the general guard as the gate will check it (prose perplexity within
    # evaluation.general_bound, the base model's right answers kept), rather than the best step: a taste learned
    # hard then costs no candidate the gate
    keep_within_guard: bool = True
    # whether the step a fine-tune starts from may be the one kept. A night starts from what serves now, and the
    # gate compares its candidate with that on the held-out ratings, more than the validation split holds: the
    # night's candidate is its best trained step. Keeping the start, when a validation split of twenty ratings
    # happened to prefer it, offered the gate the live adapter itself (two nights of five of a direct-taste run)
    keep_start: bool = False
    # replay: the base model's own answers to this many general questions (chatterbot-corpus's trivia and science,
    # none of the guard's) are learned beside the night's data with this weight, so that learning a taste does
    # not take the base model's facts with it (trainer/nightly/retain.py; 0: none)
    retain_questions: int = Field(48, ge=0, le=1024)
    retain_weight: float = Field(1.0, ge=0.0)
    # "assistant": loss on the bot's replies only; "all": on every token of the conversation
    loss_on: Literal["assistant", "all"] = "assistant"
    learning_rate: float = Field(2e-4, gt=0.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_steps: int = Field(10, ge=0)
    epochs: int = Field(2, ge=1)
    # an upper bound on optimizer steps per target (0: no bound beyond the epochs)
    max_steps: int = Field(0, ge=0)
    batch_size: int = Field(8, ge=1)
    grad_clip: float = Field(1.0, gt=0.0)
    eval_every: int = Field(25, ge=1)
    # evaluations without a better validation loss before training stops early
    patience: int = Field(3, ge=1)
    checkpoint_every: int = Field(25, ge=1)
    max_seq_tokens: int = Field(384, ge=32)
    # padded tokens per forward pass: a larger batch is split and its gradients accumulated (bounds memory)
    max_batch_tokens: int = Field(1024, ge=32)
    seed: int = 0
    # how each fine-tune is started, e.g. "torchrun --nproc_per_node 2"; empty runs it in-process
    launcher: str = ""


class RewardModelSettings(BaseModel):
    """A scoring head on the frozen base model, trained each night on every member's ratings
    (trainer/nightly/reward.py); its best-of-n pairs of the live model's own replies feed DPO only when it
    ranks held-out ratings well enough."""

    enabled: bool = True
    # AUC (liked above disliked) it must reach before its pairs are used, on every rating scored by a head fitted
    # without that rating's prompt (check_folds folds by prompt); where min_pairs pairs of a liked and a disliked
    # reply to one prompt are there, the share of them it ranks right instead. Not higher: a reward model that ranks
    # two thirds of members' pairs right still picks the better of a prompt's drawn replies far more often than not
    # (the field's reward models rank 65 to 75 % of human pairs right), and at 100 held-out pairs 0.62 is over two
    # standard errors above chance
    min_auc: float = Field(0.62, ge=0.5, le=1.0)
    check_folds: int = Field(5, ge=2, le=20)
    # ratings of each class (liked, disliked) needed before its AUC counts
    min_per_class: int = Field(5, ge=1)
    # pairs that judge it instead of its AUC: not fewer, as the share right of ten pairs has a standard error near
    # 0.16 (a night judged its model by 11 held-out pairs at 54.5 % when its AUC on 101 ratings was 0.72)
    min_pairs: int = Field(30, ge=1)
    # replies drawn per rated training prompt from the model serving now (0: no on-policy pairs)
    best_of_n: int = Field(4, ge=0, le=16)
    max_prompts: int = Field(64, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    # the temperature they are drawn at, within the default persona's top_p, top_k and repetition penalty
    temperature: float = Field(1.0, gt=0.0)
    seed: int = 0
    # once it passed, the gate judges a candidate by its own replies: this many drawn per held-out or validation
    # prompt (at most judge_max_prompts) from the candidate and from live, scored by it (0: the gate judges by
    # ratings alone). A candidate's implied reward on members' old replies says little of what it will reply: a night's
    # candidate ranked held-out ratings with an AUC of 0.85 and its replies were liked no more than base's
    judge_samples: int = Field(2, ge=0, le=16)
    judge_max_prompts: int = Field(64, ge=2)


class PreferenceSettings(BaseModel):
    """What the nightly fine-tune learns from members' ratings (trainer/README.md, "Learning from ratings")."""

    enabled: bool = True
    # DPO's and KTO's beta: how strongly the implied reward beta * (log p - log p_ref) is held near the reference
    beta: float = Field(0.1, gt=0.0)
    # the reference model of the objectives: the night's policy ("live": a candidate carried from an earlier night,
    # else what serves the target now), or the base model
    reference: Literal["live", "base"] = "live"
    # the step's loss is the weighted sum of each part's mean: next-token (logs and liked replies), DPO, KTO
    next_token_weight: float = Field(1.0, ge=0.0)
    dpo_weight: float = Field(1.0, ge=0.0)
    kto_weight: float = Field(1.0, ge=0.0)
    # KTO's lambda_D and lambda_U: the weight of a liked and of a disliked reply ("fixed"), or set from each
    # night's counts ("counts", the KTO paper's rule) so that lambda_D * n_D / (lambda_U * n_U) = kto_class_ratio
    kto_class_weights: Literal["counts", "fixed"] = "counts"
    kto_class_ratio: float = Field(1.0, ge=1.0, le=4 / 3)
    kto_desirable_weight: float = Field(1.0, ge=0.0)
    kto_undesirable_weight: float = Field(1.0, ge=0.0)
    # the rated turns an export reads at most (the newest are kept)
    max_rated_turns: int = Field(20_000, ge=1)
    # DPO pairs formed from one prompt's replies at most
    max_pairs_per_prompt: int = Field(6, ge=1)
    # the share of rated prompts held out to judge candidates (never trained on)
    heldout_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    reward_model: RewardModelSettings = RewardModelSettings()
    # which step's adapter a fine-tune keeps: the one whose implied reward ranks the validation ratings best
    # ("preference": liked above disliked, AUC), once they hold select_min_per_class of each, or, once they hold
    # select_min_pairs pairs of replies to one prompt rated apart, the one that puts the liked reply of most of
    # those pairs first (an implied reward is defined up to a constant per prompt); else, or with "loss", the one
    # with the lowest validation loss of the mixture
    select_by: Literal["preference", "loss"] = "preference"
    select_min_per_class: int = Field(3, ge=1)
    select_min_pairs: int = Field(6, ge=1)
    # a later step whose score is within this many standard errors of the best one's (the validation ratings'
    # standard error with no difference between steps) is kept instead: twenty-odd validation ratings cannot tell
    # such steps apart, and the later one has learned more from the night's ratings (0: the best score is kept)
    select_later_within_se: float = Field(1.0, ge=0.0)


class EvaluationSettings(BaseModel):
    # a candidate's test perplexity must be below (1 - margin) x the live one's (when ratings cannot judge)
    margin: float = Field(0.02, ge=0.0, lt=1.0)
    # its perplexity on the general prose may exceed the base model's by at most this fraction
    general_bound: float = Field(0.05, ge=0.0)
    # plain prose the general guard reads (UTF-8 text); empty: the public-domain excerpt shipped with the trainer
    prose_file: str = ""
    # questions the base model answers right, which must stay right (YAML); empty: the set shipped with the trainer
    questions_file: str = ""
    # right answers of the base model the candidate may lose
    questions_may_lose: int = Field(0, ge=0)
    question_max_new_tokens: int = Field(32, ge=1)
    # on the same held-out ratings, the candidate's AUC (liked above disliked, by implied reward) must beat
    # live's by reward_margin_se standard errors of the paired difference (DeLong), and by reward_margin at least
    reward_margin: float = Field(0.0, ge=0.0, lt=0.5)
    reward_margin_se: float = Field(1.645, ge=0.0)
    # where both AUCs are at least this, a better candidate cannot show on held-out ratings: one not significantly
    # worse passes, and members' ratings decide (the canary must be liked at least as well as live)
    reward_saturated: float = Field(0.95, gt=0.5, le=1.0)
    # held-out rated replies needed to judge by ratings, and of each class (liked, disliked) among them
    min_heldout_ratings: int = Field(8, ge=2)
    min_heldout_per_class: int = Field(5, ge=1)
    # pairs of a liked and a disliked held-out reply to one prompt from which those pairs judge instead of the AUC
    # (the same measure with the prompts' constants out of the way; the margins above apply to it)
    min_heldout_pairs: int = Field(10, ge=1)
    # test conversations whose replies are generated for BLEU and chrF
    bleu_samples: int = Field(16, ge=0)
    bleu_max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(8, ge=1)
    max_batch_tokens: int = Field(2048, ge=32)


class CanarySettings(BaseModel):
    """A community candidate that passed the gate first serves a share of opted-in members (trainer/README.md)."""

    # the share of opted-in members it serves, chosen by a hash of the member's id (0: it goes live at once)
    share: float = Field(0.2, ge=0.0, le=1.0)
    # ratings of its replies before it can be promoted
    min_ratings: int = Field(50, ge=1)
    # rolled back when a one-sided two-proportion z-test finds its like-rate below live's at this level
    level: float = Field(0.05, gt=0.0, lt=0.5)
    # promoted (unless significantly worse) once it has served this long without reaching min_ratings
    max_wait_s: int = Field(3 * 24 * 3600, ge=60)


class TrainerSettings(BaseModel):
    runs_dir: str = "var/runs"
    registry_dir: str = "var/registry"
    keep_versions: int = Field(5, ge=1)
    min_user_turns: int = Field(50, ge=1)
    schedule_cron: str = "0 3 * * *"
    timezone: str = "UTC"
    # a community adapter is trained once the cleaned data holds this many turns
    min_community_turns: int = Field(20, ge=1)
    # the data (exports, splits, checkpoints) of older runs is deleted; their reports are kept
    keep_run_data: int = Field(1, ge=0)
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    # a pause this long in a chat starts a new conversation (the unit of the train/val/test split)
    conversation_gap_s: int = Field(1800, ge=1)
    max_turn_chars: int = Field(2000, ge=1)
    lock_ttl_s: float = Field(120.0, ge=1.0)
    # a scheduled run that could not start on time still starts within this many seconds
    misfire_grace_s: int = Field(3600, ge=1)
    # per-user adapters a brain keeps loaded (least recently used ones are unloaded)
    adapter_cache_size: int = Field(8, ge=1)
    # brains re-read the registry this often, so a reload event that was lost or never sent costs at most this
    reload_reconcile_s: float = Field(30.0, gt=0.0)
    finetune: FinetuneSettings = FinetuneSettings()
    preference: PreferenceSettings = PreferenceSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    canary: CanarySettings = CanarySettings()
