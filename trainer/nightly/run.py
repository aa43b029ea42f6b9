"""One nightly run, top to bottom.

lock -> purge what forgotten users left (their adapters, run data, mentions in kept reports and plots, and,
through a rewrite of Redis's append-only file, their data on Redis's disk) -> export logs and ratings
(scrubbed) -> clean and split -> decide the running canary (promote, roll back, or let it go on) -> for each
target (the community, then each opted-in user with enough turns): fine-tune (next-token on the logs and
liked replies, DPO and KTO on ratings), evaluate base, live and candidate, gate, then start a canary (the
community) or promote (a user's own adapter) -> prune old versions and old run data -> report and plots.

What is live changes in one place only: Registry.promote, after the candidate's directory is complete and
while the lock is still ours. A run killed at any other point leaves the live model as it was; the next
run starts afresh and resumes a fine-tune from its checkpoint when the data and settings are the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console

from brain import log_privacy, personas
from brain.adapters import COMMUNITY, USER_PREFIX, target_of_member, user_target, version_dir
from brain.api_models import SamplingParams
from brain.consent import is_opted_in
from brain.engine.model_loading import resolve_model, serving_dtype
from brain.settings import Settings
from brain.store.ids import tombstone_member
from brain.store.ratings import BASE
from trainer.core.examples import ChatRenderer
from trainer.core.finetuning import FinetuneResult
from trainer.core.loop import RunCancelled
from trainer.nightly import canary, runs
from trainer.nightly.clean import clean_export, load_split
from trainer.nightly.conversations import Personas, encode_all, prompts
from trainer.nightly.export import export_logs, load_snapshot
from trainer.nightly.files import write_json, write_jsonl
from trainer.nightly.gate import decide
from trainer.nightly.guard import GuardSet, guard_set
from trainer.nightly.link import RedisLink
from trainer.nightly.lock import TrainerLock
from trainer.nightly.lora import FinetuneJob, finetune, load_result
from trainer.nightly.ratings import (
    RATING_SPLITS,
    disliked_in_run,
    heldout_replies,
    load_ratings,
    split_ratings,
    without_replies,
)
from trainer.nightly.registry import Registry, now_iso
from trainer.nightly.report import (
    ExportSummary,
    Outcome,
    RunReport,
    RunSettings,
    ScoreSet,
    print_report,
    summarize,
    write_report,
)
from trainer.nightly.report_plot import LIKES_PLOT, PLOT, write_like_plot, write_plot
from trainer.nightly.reward import ONPOLICY_PAIRS, RepliesJudged, RewardCheck, RewardStep
from trainer.nightly.scoring import EvalSet, Evaluator, Scores

console = Console(stderr=True)


@dataclass
class Target:
    name: str
    user: str | None
    turns: int


class Nightly:
    def __init__(self, settings: Settings, link: RedisLink, lock: TrainerLock, stop: threading.Event | None):
        self.settings = settings
        self.cfg = settings.trainer
        self.link = link
        self.lock = lock
        self.stop = stop
        self.registry = Registry(self.cfg.registry_dir, link, self.cfg.keep_versions)
        self.model_path = str(resolve_model(settings.model.name, settings.model.cache_dir))
        self.run_dir = runs.new_run_dir(self.cfg.runs_dir)
        presets = personas.load_presets(settings.brain.personas_dir)
        self.system_prompts = {name: p.system_prompt for name, p in presets.items()}
        default = presets.get(settings.brain.default_persona)
        # how members are served: the gate's reward model judges replies drawn the same way
        self.serving = default.sampling if default else SamplingParams()
        self.personas = Personas(self.system_prompts, settings.brain.default_persona)
        self.cpu_bf16 = cpu_bf16(settings)
        self._evaluator: Evaluator | None = None
        self._reward: RewardStep | None = None
        self._guard: GuardSet | None = None
        self.trained_on: list[str] = []  # tombstone members of the exported users (authors and raters)
        self.canary_waiting: canary.CanaryDecision | None = None
        self.canary_started: canary.CanaryDecision | None = None

    def run(self) -> RunReport:
        report = RunReport(run=self.run_dir.name, started_at=now_iso())
        try:
            purged = self.registry.purge_forgotten(lock=self.lock)
            report.purged_targets = len(purged.targets)  # a count: this report must not name them
            report.purged_community_versions = purged.community_versions
            report.purged_runs = runs.purge_run_data(
                self.cfg.runs_dir, self.link, keep=self.cfg.keep_run_data, current=self.run_dir
            )
            report.redacted_reports = runs.redact_reports(self.cfg.runs_dir, self._forgotten_targets())
            report.repaired_plots = self._finish_killed_runs()
            report.persistence = self._rewrite_persistence()
            preference = self.cfg.preference
            manifest = export_logs(self.link, self.run_dir, preference.max_rated_turns if preference.enabled else 0)
            self.trained_on = manifest.user_hashes
            whom = {"users", "user_hashes"}
            report.export = ExportSummary(
                **{k: v for k, v in asdict(manifest).items() if k not in whom}, users=len(manifest.users)
            )
            cleaned = clean_export(
                load_snapshot(self.run_dir),
                self.run_dir,
                max_chars=self.cfg.max_turn_chars,
                gap_s=self.cfg.conversation_gap_s,
                val_fraction=self.cfg.val_fraction,
                test_fraction=self.cfg.test_fraction,
            )
            report.clean = cleaned
            report.rating_splits = split_ratings(
                self.run_dir, val_fraction=self.cfg.val_fraction, heldout_fraction=preference.heldout_fraction
            )
            counts = self.link.call(self.link.store.ratings.like_counts())
            report.like_counts = {name: n for name, n in counts.items() if not name.startswith(USER_PREFIX)}
            report.canary_check = canary.check(self.registry, COMMUNITY, self.cfg.canary, lock=self.lock)
            if report.canary_check is not None and report.canary_check.action == "waiting":
                self.canary_waiting = report.canary_check
            for target in self.plan():
                report.targets.append(self.train_target(target))
                if report.targets[-1].status == "canary":
                    report.canary_started = self.canary_started
                release_memory()
            report.status = "finished"
        except BaseException as error:
            report.status = "cancelled" if isinstance(error, (RunCancelled, KeyboardInterrupt)) else "failed"
            report.error = f"{type(error).__name__}: {error}"
            raise
        finally:
            report.finished_at = now_iso()
            report.settings = RunSettings(
                model=self.settings.model.name, finetune=self.cfg.finetune, evaluation=self.cfg.evaluation,
                preference=self.cfg.preference, canary=self.cfg.canary,
            )  # fmt: skip
            write_report(self.run_dir, report)
            self._leave_summary(report)
        for name in self.registry.targets():
            self.registry.prune(name)
        runs.purge_run_data(self.cfg.runs_dir, self.link, keep=max(0, self.cfg.keep_run_data - 1), current=self.run_dir)
        history = runs.readable_reports(self.cfg.runs_dir)
        write_plot(self.run_dir, report, history)
        write_like_plot(self.run_dir, history)
        return report

    def _finish_killed_runs(self) -> list[str]:
        """What an earlier run killed after writing its report left undone, done now: the versions beyond
        keep_versions it would have pruned, and its plots. Returns the runs whose plots were drawn."""
        for name in self.registry.targets():
            self.registry.prune(name)
        history = runs.readable_reports(self.cfg.runs_dir)
        drawn = []
        root = Path(self.cfg.runs_dir).expanduser()
        for i, past in enumerate(history):
            run_dir = root / past.run
            if run_dir == self.run_dir or (run_dir / PLOT).exists():
                continue
            # the history as it stood when that run ended
            if write_plot(run_dir, past, history[: i + 1]) is not None:
                drawn.append(past.run)
            if not (run_dir / LIKES_PLOT).exists():
                write_like_plot(run_dir, history[: i + 1])
        return drawn

    def _leave_summary(self, report: RunReport) -> None:
        """The report's summary in Redis, for the operator's dashboard; a failure there never fails the run."""
        try:
            self.link.call(self.link.store.dashboard.add_run_summary(summarize(report)))
        except Exception as error:
            console.print(f"[yellow]the run's summary was not left in Redis: {type(error).__name__}: {error}")

    def _forgotten_targets(self) -> set[str]:
        return {target_of_member(member) for member in self.link.call(self.link.store.tombstones.members())}

    def _rewrite_persistence(self) -> str:
        """After a /forget, have Redis rewrite its append-only file: until then it still holds what was deleted."""
        store = self.link.store
        if not self.link.call(store.persistence.forgotten_since_rewrite()):
            return "unchanged"
        try:
            rewritten = self.link.call(store.persistence.rewrite(timeout_s=600), timeout=660)
        except Exception as error:  # a managed Redis may refuse BGREWRITEAOF: say so, train all the same
            console.print(f"[yellow]Redis did not rewrite its append-only file: {type(error).__name__}: {error}")
            return f"failed: {type(error).__name__}: {error}"
        return "rewritten" if rewritten else "no append-only file"

    def plan(self) -> list[Target]:
        """The community, then each user who is opted in now and has enough turns (ordered by the hash)."""
        turns: Counter = Counter()
        for split in ("train", "val", "test"):
            for conv in load_split(self.run_dir, split):
                turns[conv["user"]] += len(conv["turns"])
        targets = [Target(COMMUNITY, None, sum(turns.values()))]
        for user, count in turns.items():
            if count >= self.cfg.min_user_turns:
                profile = self.link.call(self.link.store.profiles.get(user))
                if is_opted_in(profile):
                    targets.append(Target(user_target(user), user, count))
        return targets[:1] + sorted(targets[1:], key=lambda t: t.name)

    def train_target(self, target: Target) -> Outcome:
        minimum = self.cfg.min_community_turns if target.user is None else self.cfg.min_user_turns
        if target.turns < minimum:
            reason = f"{target.turns} turns, fewer than the {minimum} needed"
            return Outcome(target=target.name, status="skipped", reasons=[reason])
        if target.user is None and self.canary_waiting is not None:
            reason = f"a canary is still collecting ratings: {self.canary_waiting.reason}"
            return Outcome(target=target.name, status="skipped", reasons=[reason], turns=target.turns)
        splits = {name: load_split(self.run_dir, name, target.user) for name in ("train", "val", "test")}
        if not all(splits.values()):
            sizes = ", ".join(f"{name} {len(convs)}" for name, convs in splits.items())
            reason = f"a split has no conversation ({sizes})"
            return Outcome(target=target.name, status="skipped", reasons=[reason], turns=target.turns)
        try:
            return self._train_and_gate(target)
        except (RunCancelled, KeyboardInterrupt):
            raise
        except Exception as error:  # one target's failure leaves the others (and what is live) alone
            console.print(f"[red]{target.name} failed: {type(error).__name__}: {error}")
            reason = f"{type(error).__name__}: {error}"
            return Outcome(target=target.name, status="failed", reasons=[reason], turns=target.turns)

    def _train_and_gate(self, target: Target) -> Outcome:
        out_dir = self.run_dir / "targets" / target.name
        carried = self._carried(target)
        job = FinetuneJob(
            target=target.name,
            model_path=self.model_path,
            run_dir=str(self.run_dir),
            out_dir=str(out_dir),
            user=target.user,
            system_prompts=self.system_prompts,
            default_persona=self.settings.brain.default_persona,
            settings=self.cfg.finetune,
            resume_dirs=[str(p) for p in runs.interrupted(self.cfg.runs_dir, target.name, self.run_dir)],
            preference=self.cfg.preference if self.cfg.preference.enabled else None,
            reference_dir=self._reference_dir(target, carried),
            cpu_bf16=self.cpu_bf16,
        )
        if self.cfg.finetune.keep_within_guard:
            job.guard = self.cfg.evaluation
        start = self._own_live(target) if self.cfg.finetune.start_from == "live" else None
        if carried is not None:
            start = f"the candidate of run {carried[0].parents[2].name}", carried[0]
        if start is not None:
            job.start_name, job.start_dir = start[0], str(start[1])
        seconds: dict[str, float] = {}
        with timed(seconds, "reward model"):
            reward_check = self._onpolicy_pairs(target, out_dir, carried)
        if reward_check is not None and reward_check.pairs:
            job.onpolicy_pairs = str(out_dir / ONPOLICY_PAIRS)
        job.save(out_dir / "job.json")
        with timed(seconds, "fine-tune"):
            if self.cfg.finetune.launcher.strip():
                self._launch(out_dir / "job.json")
                result = load_result(out_dir)
            else:
                result = finetune(job, self.stop)
        outcome = Outcome(
            target=target.name, status="kept", reasons=[], turns=target.turns, finetune=result,
            reward_model=reward_check,
        )  # fmt: skip
        if result.beyond_guard:  # nothing the gate could pass: its time is spared
            outcome.seconds = seconds
            outcome.reasons = [
                f"every step of the night went beyond the general guard (its prose bound, or the base model's right"
                f" answers; step {result.best_step} least): no candidate, the live version stays"
            ]
            return outcome
        adapter_dir = str(out_dir / "adapter")

        with timed(seconds, "gate"):
            data = self._eval_set(target)
            evaluator = self._get_evaluator()
            base = evaluator.score("base", None, data)
            live = self._live_scores(target, data, base)
            candidate = evaluator.score("candidate", adapter_dir, data)
            outcome.replies_judged = self._judge_replies(target, adapter_dir)
        outcome.seconds = seconds
        outcome.scores = ScoreSet(base=base, live=live, candidate=candidate)
        decision = decide(candidate, live, base, self.cfg.evaluation, outcome.replies_judged)
        outcome.reasons = decision.reasons
        if decision.ahead and self._carrying:
            learned = [tombstone_member(target.user)] if target.user else self._learned_from(result, carried)
            carry = runs.Carry(live=self._live_name(target), learned_from=learned)
            write_json(out_dir / runs.CARRY, carry.model_dump())
            outcome.carried = True
            outcome.reasons.append("ahead of live inside the noise: the next night goes on from it")
        if decision.members_decide and not (target.user is None and self.cfg.canary.share > 0):
            outcome.reasons.append("no canary to let members decide: the live version stays")
            return outcome
        if not decision.promote:
            return outcome
        if self.stop is not None and self.stop.is_set():
            raise RunCancelled("stopped before promoting")
        if target.user and self.link.call(self.link.store.tombstones.forgotten_at(target.user)) is not None:
            outcome.status, outcome.reasons = "skipped", ["the user was forgotten during the run"]
            return outcome
        metrics = {
            "test_ppl": candidate.test_ppl,
            "general_ppl": candidate.general_ppl,
            "bleu": candidate.bleu,
            "chrf": candidate.chrf,
            "base_test_ppl": base.test_ppl,
            "base_general_ppl": base.general_ppl,
            "live_test_ppl": live.test_ppl,
            "reward_auc": candidate.reward_auc,
            "live_reward_auc": live.reward_auc,
            "questions_right": float(sum(candidate.answers_right)),
        }
        # who the version learned from, so that a later /forget can take it out of service
        outcome.version = self.registry.add(
            target.name,
            adapter_dir,
            base_model=self.settings.model.name,
            run=self.run_dir.name,
            metrics=metrics,
            user_hash=tombstone_member(target.user) if target.user else None,
            user_hashes=None if target.user else self._learned_from(result, carried),
        )
        if target.user is None and self.cfg.canary.share > 0:  # members' ratings have the last word
            self.lock.check()
            self.canary_started = canary.start(
                self.registry, target.name, outcome.version, self.cfg.canary, run=self.run_dir.name, metrics=metrics,
                members_decide=decision.members_decide,
            )  # fmt: skip
            outcome.status = "canary"
            outcome.reasons.append(self.canary_started.reason)
            return outcome
        self.registry.promote(target.name, outcome.version, lock=self.lock, user=target.user)
        outcome.status = "promoted"
        return outcome

    def _launch(self, job_file: Path) -> None:
        """Run the fine-tune under the configured launcher (torchrun, accelerate launch) and wait for it."""
        command = [*shlex.split(self.cfg.finetune.launcher), "-m", "trainer.nightly.worker", str(job_file)]
        process = subprocess.Popen(command)
        while process.poll() is None:
            if self.stop is not None and self.stop.is_set():
                process.terminate()
                process.wait()
                raise RunCancelled("stopped during the fine-tune")
            time.sleep(0.2)
        if process.returncode != 0:
            raise RuntimeError(f"the fine-tune under {command[0]} ended with status {process.returncode}")

    def _eval_set(self, target: Target) -> EvalSet:
        evaluation, finetune = self.cfg.evaluation, self.cfg.finetune
        tokenizer = self._get_evaluator().tokenizer
        renderer = ChatRenderer(tokenizer, loss_on=finetune.loss_on, max_tokens=finetune.max_seq_tokens)
        if self._guard is None:  # the same for every target: rendered and tokenized once
            system = self.personas.system(self.settings.brain.default_persona)[0]["content"]
            self._guard = guard_set(renderer, system, evaluation.prose_file, evaluation.questions_file)
        test = load_split(self.run_dir, "test", target.user)
        heldout = load_ratings(self.run_dir, "heldout", target.user) if self.cfg.preference.enabled else []
        if self.cfg.preference.enabled:
            # what members disliked is not what a candidate should predict well: a model that learned their taste
            # predicts those replies worse, and would be refused for it where too few ratings judge it
            test = without_replies(test, disliked_in_run(self.run_dir, target.user)) or test  # all disliked: as it was
        return EvalSet(
            test=encode_all(renderer, self.personas, test),
            guard=self._guard,
            prompts=prompts(renderer, self.personas, test, evaluation.bleu_samples),
            heldout=heldout_replies(renderer, heldout),
            beta=self.cfg.preference.beta,
        )

    def _live(self, target: Target) -> tuple[str, Path] | None:
        """What serves this target's traffic now: its own live adapter, else the community one (None: the base)."""
        records = self.registry.records()
        for name in (target.name, COMMUNITY):
            record = records.get(name)
            if record and record.base_model == self.settings.model.name:
                path = version_dir(self.cfg.registry_dir, name, record.version)
                if path.is_dir():
                    return record.name, path
        return None

    def _own_live(self, target: Target) -> tuple[str, Path] | None:
        """The target's own live adapter (not the community's for a member), which a night may continue."""
        live = self._live(target)
        record = self.registry.records().get(target.name)
        return live if live is not None and record is not None and live[0] == record.name else None

    @property
    def _carrying(self) -> bool:
        return self.cfg.finetune.start_from == "live" and self.cfg.finetune.carry_unproven

    def _carried(self, target: Target) -> tuple[Path, runs.Carry] | None:
        """The candidate an earlier night left to go on from (finetune.carry_unproven), while what it was trained
        beside still serves."""
        if not self._carrying:
            return None
        return runs.carried(self.cfg.runs_dir, target.name, self._live_name(target), self.run_dir)

    def _live_name(self, target: Target) -> str:
        live = self._live(target)
        return live[0] if live else BASE

    def _learned_from(self, result: FinetuneResult, carried: tuple[Path, runs.Carry] | None) -> list[str]:
        """Whom a community version learned from: tonight's members, and, when it continued a live version or
        a carried candidate, everyone that one learned from (a /forget of any of them takes it out of service
        too)."""
        if result.continued_from is None:
            return self.trained_on
        if carried is not None:
            return sorted(set(self.trained_on) | set(carried[1].learned_from))
        record = self.registry.records().get(COMMUNITY)
        earlier = self.registry.meta(COMMUNITY, record.version).user_hashes if record else []
        return sorted(set(self.trained_on) | set(earlier))

    def _live_scores(self, target: Target, data: EvalSet, base: Scores) -> Scores:
        live = self._live(target)
        return self._get_evaluator().score(live[0], str(live[1]), data) if live else base

    def _policy(self, target: Target, carried: tuple[Path, runs.Carry] | None) -> Path | None:
        """The night's policy: a candidate an earlier night carried, else what serves the target now (None: the
        base model); what tonight's training goes on from where it continues one, as iterative DPO's rounds do.
        Best-of-n draws its replies, and the preference objectives measure their log-ratios from it."""
        if carried is not None:
            return carried[0]
        live = self._live(target)
        return live[1] if live else None

    def _reference_dir(self, target: Target, carried: tuple[Path, runs.Carry] | None) -> str | None:
        """The preference objectives' reference: the night's policy (``preference.reference: live``), or the
        base model."""
        policy = self._policy(target, carried) if self.cfg.preference.reference == "live" else None
        return str(policy) if policy else None

    def _onpolicy_pairs(
        self, target: Target, out_dir: Path, carried: tuple[Path, runs.Carry] | None
    ) -> RewardCheck | None:
        """Train the night's reward model on every member's ratings (once a run), and write the target's
        best-of-n pairs of the night's policy (see ``_policy``) beside its job when the model passed its held-out
        check (reward.py)."""
        preference = self.cfg.preference
        if not (preference.enabled and preference.reward_model.enabled):
            return None
        evaluator = self._get_evaluator()
        if self._reward is None:
            finetune = self.cfg.finetune
            renderer = ChatRenderer(evaluator.tokenizer, loss_on=finetune.loss_on, max_tokens=finetune.max_seq_tokens)
            self._reward = RewardStep(
                evaluator.base, evaluator.tokenizer, renderer, preference.reward_model, device=evaluator.device,
                eos_token_ids=evaluator.eos, batch_size=self.cfg.evaluation.batch_size,
                max_batch_tokens=self.cfg.evaluation.max_batch_tokens,
            )  # fmt: skip
            self._reward.train(*(load_ratings(self.run_dir, split) for split in RATING_SPLITS))
        step = self._reward
        start = self._policy(target, carried)
        with evaluator.attached(str(start) if start else None) as policy:
            drawn = step.sample(policy, load_ratings(self.run_dir, "train", target.user), self.serving)
        pairs = step.rank(drawn)  # scored by the base model's features, once the adapter is off
        write_jsonl(out_dir / ONPOLICY_PAIRS, [pair.model_dump() for pair in pairs])
        return step.check.model_copy()

    def _judge_replies(self, target: Target, adapter_dir: str) -> RepliesJudged | None:
        """The night's reward model's judgment of the candidate's and live's replies to the target's held-out and
        validation prompts (None where it was not trained or did not pass its check)."""
        if self._reward is None or not self.cfg.preference.enabled:
            return None
        evaluator = self._get_evaluator()
        # the prompts no step was trained on: held out, and validation (which only chose among steps)
        unseen = [turn for split in ("heldout", "val") for turn in load_ratings(self.run_dir, split, target.user)]
        prompts = self._reward.prompts_of(unseen, self.cfg.preference.reward_model.judge_max_prompts)
        live = self._live(target)
        serving = (live[0], evaluator.attached(str(live[1]))) if live else ("base", evaluator.attached(None))
        return self._reward.judge(prompts, evaluator.attached(adapter_dir), serving, self.serving)

    def _get_evaluator(self) -> Evaluator:
        if self._evaluator is None:
            evaluation = self.cfg.evaluation
            self._evaluator = Evaluator(
                self.model_path,
                batch_size=evaluation.batch_size,
                max_batch_tokens=evaluation.max_batch_tokens,
                max_new_tokens=evaluation.bleu_max_new_tokens,
                question_max_new_tokens=evaluation.question_max_new_tokens,
                cpu_bf16=self.cpu_bf16,
            )
        return self._evaluator


def cpu_bf16(settings: Settings) -> bool:
    """Whether the nightly runs its model in bf16 on a CPU: where the brain serves it so (``model.dtype`` and
    ``model.cpu_weights``; by default on a CPU with bf16 instructions), so that the replies the gate judges are drawn
    as members get them. Adapters stay float32 and the fine-tune's steps run under autocast. On the default model,
    2 cores with AVX512-BF16, a LoRA step is 1.8x faster than in float32, a scoring pass 3.1x, sampling 1.6x."""
    cpu = torch.device("cpu")
    return serving_dtype(cpu, settings.model.dtype, settings.model.cpu_weights) == torch.bfloat16


@contextlib.contextmanager
def timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the block's wall time to ``seconds[phase]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = round(seconds.get(phase, 0.0) + time.perf_counter() - started, 1)


def release_memory() -> None:
    """Hand memory freed by a target's fine-tune back to the system before the next one starts.

    glibc keeps freed blocks in its arenas, so without this the resident size only grows from one
    target to the next although nothing is leaked."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def run_nightly(settings: Settings, *, stop: threading.Event | None = None, quiet: bool = False) -> RunReport:
    """Run once under the trainer lock; raises LockHeldError when another run holds it."""
    log_privacy.install()  # its log at INFO names no member
    with RedisLink.from_settings(settings) as link, TrainerLock(link, settings.trainer.lock_ttl_s) as lock:
        report = Nightly(settings, link, lock, stop).run()
    if not quiet:
        print_report(report, Console(file=sys.stdout))
    return report
