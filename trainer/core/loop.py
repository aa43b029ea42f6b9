"""One training loop, for pretraining and fine-tuning alike, top to bottom.

Given a model, an objective and a source of batches: AdamW (decoupled weight decay on matrices only),
linear warmup then cosine decay, micro-batches whose gradients add up to the step's (under DDP, summed
across processes once per step), gradient clipping, bf16 autocast on CUDA, evaluation at the start and
every K steps keeping the best model, early stopping after P evaluations without a better one, a
resumable checkpoint every C steps, cancellation between steps, and a rich progress bar.

A recipe (pretraining, fine-tuning) hands the loop a Training (the model, the objective, the batches, the
optimizer, the schedule and the validation) and every option in one LoopSettings. What the loop keeps is up
to its caller (LoopHooks): ``keep_best`` (the model just beat every earlier evaluation) and
``save_checkpoint`` (a Snapshot: the loop's state, the optimizer's, the schedule's, every process's RNG
and the data position -- all that resuming needs besides the weights) write their own formats.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from trainer.core.distributed import Placement, all_gather, mean_across_ranks, rng_state, set_rng_state
from trainer.core.objectives import Objective

console = Console(stderr=True)


class RunCancelled(RuntimeError):
    """The run was asked to stop (SIGTERM to the scheduler) and stopped between two steps."""


class BatchSource(Protocol):
    def for_step(self, step: int) -> list[Any]:
        """This process's micro-batches of optimizer step ``step`` (counted from 0)."""
        ...

    def state(self) -> dict[str, Any]:
        """Where the data is, beyond what the step number says (for a checkpoint)."""
        ...

    def restore(self, state: dict[str, Any]) -> None: ...


class LoopSettings(BaseModel):
    """Every option of one run of the loop."""

    model_config = ConfigDict(frozen=True)

    label: str  # names the run on its progress bar
    total_steps: int = Field(ge=1)  # the learning-rate schedule's length, and the run's
    stop_after: int | None = Field(None, ge=1)  # end sooner, resumably; the schedule still spans total_steps
    grad_clip: float = Field(1.0, ge=0)  # the largest gradient norm (0: no clipping)
    eval_every: int = Field(ge=1)
    patience: int | None = Field(None, ge=1)  # evaluations without a better one before stopping early
    # the start may be the step kept; if not, it is kept only until a trained step has a finite score
    keep_start: bool = True
    # a later step whose validation score is within this of the best so far is kept instead (where the validation
    # cannot tell steps apart by less); 0: only a better one
    keep_later_within: float = Field(0.0, ge=0)
    checkpoint_every: int | None = Field(None, ge=1)
    progress: bool = True  # the progress bar and a line per evaluation, on the main process
    # the model's FLOPs per trained token and one GPU's peak FLOPs, for the bar's model FLOPs utilisation
    flops_per_token: float | None = None
    peak_flops: float | None = None

    @property
    def last_step(self) -> int:
        return self.total_steps if self.stop_after is None else min(self.total_steps, self.stop_after)


# (step, value) pairs: the train loss after each step, the validation loss at each evaluation, and the
# learning rate each step was taken with
History = dict[str, list[tuple[int, float]]]


def new_history() -> History:
    return {"train": [], "val": [], "lr": []}


@dataclass
class LoopState:
    step: int = 0
    best_val: float = math.inf  # the best validation score so far
    best_step: int = 0  # the step kept
    kept_val: float = math.inf  # its score
    bad_evals: int = 0
    history: History = field(default_factory=new_history)


@dataclass
class Snapshot:
    state: LoopState
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: list[dict[str, Any]]  # every process's, in rank order
    data: dict[str, Any]


class LoopResult(BaseModel):
    steps: int
    best_step: int
    best_val_loss: float
    base_val_loss: float  # before training: the floor the best had to beat
    stopped_early: bool
    resumed_from: int | None
    processes: int = 1
    train_tokens_per_s: float = 0.0
    history: History = Field(default_factory=new_history)


@dataclass
class Training:
    """What the loop trains and with what, as a recipe (pretraining, fine-tuning) builds it."""

    model: torch.nn.Module  # whose trainable parameters are stepped (and clipped)
    forward: torch.nn.Module  # the model as the steps call it: compiled, under DDP, or the model itself
    objective: Objective
    batches: BatchSource
    validate: Callable[[], float]  # the validation loss of the model as it is now (lower is better)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    params: list[torch.nn.Parameter] = field(init=False)

    def __post_init__(self) -> None:
        self.params = [p for p in self.model.parameters() if p.requires_grad]


@dataclass(frozen=True)
class LoopHooks:
    """What the loop's caller keeps of the run, and how it asks the run to stop. Both callbacks are called on
    every process (a snapshot gathers the RNG of all) and write on the main one, in their own formats."""

    keep_best: Callable[[LoopState], None] | None = None  # the model just beat every earlier evaluation
    save_checkpoint: Callable[[Snapshot], None] | None = None  # all that resuming needs besides the weights
    stop: threading.Event | None = None  # once set, the run raises RunCancelled between two steps


@dataclass
class Speed:
    """Training throughput (evaluations and checkpoints left out): over the run, and a moving average for the bar."""

    seconds: float = 0.0
    tokens: int = 0
    tok_s: float = 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.seconds, self.tokens = self.seconds + seconds, self.tokens + tokens
        self.tok_s = tokens / seconds if self.tok_s == 0 else 0.9 * self.tok_s + 0.1 * tokens / seconds

    @property
    def mean(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def adamw(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    device: torch.device,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; matrices decay, biases and norm gains do not (as in GPT-2)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [group for group in groups if group["params"]]
    # one fused kernel per step rather than a dozen small ops per tensor: on CPU too (torch >= 2.4), where a
    # small model's step spends a tenth of its time in the optimizer otherwise
    fused = True if device.type in ("cpu", "cuda") else None
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def progress_bar(label: str, out: Console, *, enabled: bool = True) -> Progress:
    """The trainers' bar: steps done of all, a field ``info`` (loss, speed) and the time left."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=out,
        disable=not enabled,
    )


def backward(
    forward: torch.nn.Module, objective: Objective, micro_batches: list[Any], placement: Placement
) -> tuple[float, int]:
    """Forward and backward over one step's micro-batches, leaving in the gradients that of the step's mean
    loss, as if its micro-batches had gone through at once. Returns that mean loss and the tokens it took."""
    units = max(1, sum(objective.count(batch) for batch in micro_batches))
    total, tokens = 0.0, 0
    for index, batch in enumerate(micro_batches):
        batch = batch.to(placement.device)
        # under DDP, gradients are summed across processes once per step, on its last micro-batch
        syncs = index == len(micro_batches) - 1 or not placement.distributed
        with contextlib.nullcontext() if syncs else cast(DistributedDataParallel, forward).no_sync():
            with placement.autocast():
                loss = objective(forward, batch)
            (loss.total / units).backward()
        total += loss.total.item()
        tokens += batch.tokens
    return total / units, tokens


def train(
    training: Training,
    settings: LoopSettings,
    placement: Placement,
    hooks: LoopHooks | None = None,
    resume: Snapshot | None = None,
) -> LoopResult:
    """Train to ``settings.total_steps`` (or ``stop_after``), from the start or from ``resume``. Every process
    runs this; the validation loss is measured at the start, every ``eval_every`` steps and at the last one."""
    hooks = hooks or LoopHooks()
    state = restore(training, resume, placement) if resume is not None else LoopState()
    resumed_from = state.step if resume is not None else None
    training.model.train()
    if resume is None:
        evaluate(training, state, settings, placement, hooks)  # the model as it starts: the floor training must beat
    speed, stopped_early = Speed(), False
    with progress_bar(settings.label, console, enabled=shows(settings, placement)) as bar:
        task = bar.add_task(settings.label, total=settings.total_steps, completed=state.step, info="")
        while state.step < settings.last_step and not stopped_early:
            if hooks.stop is not None and hooks.stop.is_set():
                raise RunCancelled(f"{settings.label}: stopped at step {state.step} of {settings.total_steps}")
            take_step(training, state, settings, placement, speed)
            if evaluation_due(state, settings):
                evaluate(training, state, settings, placement, hooks)
                stopped_early = out_of_patience(state, settings)
            if checkpoint_due(state, settings, stopped_early):
                checkpoint(training, state, placement, hooks)
            bar.update(task, completed=state.step, info=progress_line(state, speed, settings, placement))
    placement.barrier()
    return LoopResult(
        steps=state.step,
        best_step=state.best_step,
        best_val_loss=state.kept_val,
        base_val_loss=state.history["val"][0][1],
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        processes=placement.world_size,
        train_tokens_per_s=speed.mean,
        history=state.history,
    )


def restore(training: Training, resume: Snapshot, placement: Placement) -> LoopState:
    """The optimizer, the schedule, the data and this process's RNG as the snapshot left them; its loop state."""
    training.optimizer.load_state_dict(resume.optimizer)
    training.scheduler.load_state_dict(resume.scheduler)
    training.batches.restore(resume.data)
    set_rng_state(resume.rng[placement.rank])
    return resume.state


def shows(settings: LoopSettings, placement: Placement) -> bool:
    return settings.progress and placement.is_main


def take_step(training: Training, state: LoopState, settings: LoopSettings, placement: Placement, speed: Speed) -> None:
    """One optimizer step on the step's micro-batches, its learning rate and train loss added to the history."""
    started = time.perf_counter()
    step_loss, tokens = backward(training.forward, training.objective, training.batches.for_step(state.step), placement)
    if settings.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(training.params, settings.grad_clip)
    state.history["lr"].append((state.step, float(training.scheduler.get_last_lr()[0])))
    training.optimizer.step()
    training.scheduler.step()
    training.optimizer.zero_grad(set_to_none=True)
    if placement.device.type == "cuda":
        torch.cuda.synchronize(placement.device)
    speed.add(tokens * placement.world_size, time.perf_counter() - started)
    state.step += 1
    state.history["train"].append((state.step, mean_across_ranks(step_loss, placement)))


def evaluation_due(state: LoopState, settings: LoopSettings) -> bool:
    return state.step % settings.eval_every == 0 or state.step == settings.last_step


def evaluate(
    training: Training, state: LoopState, settings: LoopSettings, placement: Placement, hooks: LoopHooks
) -> None:
    """The validation loss into the history; a better one than ever, or one within ``keep_later_within`` of the
    best, is kept (``keep_best``); another counts against the patience."""
    val = training.validate()
    state.history["val"].append((state.step, val))
    improved = val < state.best_val
    if kept(val, state.best_val, settings.keep_later_within):
        start_only = state.step == 0 and not settings.keep_start
        # a start that may not be kept is still saved, so that a run whose every step fails leaves weights behind
        state.best_val = math.inf if start_only else min(val, state.best_val)
        state.kept_val = math.inf if start_only else val
        state.best_step, state.bad_evals = state.step, 0
        if hooks.keep_best is not None:
            hooks.keep_best(state)
        placement.barrier()
    else:
        state.bad_evals += 1
    if shows(settings, placement):
        within = state.best_step == state.step and not improved
        said = "  (best)" if improved else "  (kept: within the noise of the best)" if within else ""
        console.print(f"{settings.label} step {state.step:>6}: val loss {val:.4f}{said}")


def kept(val: float, best: float, within: float) -> bool:
    """Whether a step scoring ``val`` is kept over the best so far (``best``): better, or, with ``within`` > 0, a
    finite score at most that much worse."""
    return val < best or (within > 0 and math.isfinite(val) and val <= best + within)


def out_of_patience(state: LoopState, settings: LoopSettings) -> bool:
    """``patience`` evaluations in a row without a better one, before the last step: the run stops early."""
    patience = settings.patience
    return patience is not None and state.bad_evals >= patience and state.step < settings.last_step


def checkpoint_due(state: LoopState, settings: LoopSettings, stopped_early: bool) -> bool:
    every = settings.checkpoint_every
    return every is not None and (state.step % every == 0 or stopped_early or state.step == settings.last_step)


def checkpoint(training: Training, state: LoopState, placement: Placement, hooks: LoopHooks) -> None:
    """A Snapshot of all that resuming needs besides the weights, handed to ``save_checkpoint``."""
    snapshot = Snapshot(
        state=state,
        optimizer=training.optimizer.state_dict(),
        scheduler=training.scheduler.state_dict(),
        rng=all_gather(rng_state(), placement),
        data=training.batches.state(),
    )
    if hooks.save_checkpoint is not None:
        hooks.save_checkpoint(snapshot)
    placement.barrier()


def progress_line(state: LoopState, speed: Speed, settings: LoopSettings, placement: Placement) -> str:
    """The bar's ``info``: the last train loss, the last and the best validation loss, the speed (and MFU)."""
    val = state.history["val"][-1][1] if state.history["val"] else math.nan
    mfu = ""
    if settings.flops_per_token and settings.peak_flops:
        mfu = f" | mfu {settings.flops_per_token * speed.tok_s / (settings.peak_flops * placement.world_size):.1%}"
    train_loss = state.history["train"][-1][1]
    return f"loss {train_loss:.4f} | val {val:.4f} (best {state.best_val:.4f}) | {speed.tok_s:,.0f} tok/s{mfu}"
