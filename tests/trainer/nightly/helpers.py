"""Settings and chat logs for nightly-run tests: the tiny model, a real redis-server, small bounded runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from brain.settings import Settings
from brain.store import Store
from brain.store.client import connect
from tests.support.eventually import eventually_sync

QUESTIONS = [
    "What is the capital of France?",
    "Where is Paris?",
    "Tell me about France.",
    "Which city is the capital?",
    "Name a city on the Seine.",
    "What do you know about Paris?",
]
OPENINGS = ["", "Hi! ", "Hello, ", "Quick question: ", "Hey, ", "Sorry to bother you: "]
ANSWER = "The capital of France is Paris."


CLOSINGS = ["", " Thanks!"]


def question(i: int) -> str:
    """The i-th of 72 distinct ways to ask about Paris (the cleaner drops repeated turns)."""
    return OPENINGS[(i // 6) % 6] + QUESTIONS[i % 6] + CLOSINGS[(i // 36) % 2]


TRAINING = {
    "min_community_turns": 10,
    "min_user_turns": 1000,
    "lock_ttl_s": 3,
    "finetune": {
        "max_steps": 40, "epochs": 100, "learning_rate": 3e-2, "warmup_steps": 2, "eval_every": 5,
        "checkpoint_every": 5, "batch_size": 8,
    },
    "evaluation": {
        "bleu_samples": 2, "bleu_max_new_tokens": 6, "general_bound": 100.0, "question_max_new_tokens": 6,
        "questions_may_lose": 100,
    },
    # a candidate that passes the gate goes live at once, unless a test asks for a canary
    "canary": {"share": 0.0},
}  # fmt: skip


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def nightly_settings(redis_url: str, model_dir: Path, root: Path, **trainer: Any) -> Settings:
    """Settings of a small, bounded nightly run; ``trainer`` overrides (nested dicts merge)."""
    values = merge({"runs_dir": str(root / "runs"), "registry_dir": str(root / "registry"), **TRAINING}, trainer)
    return Settings(redis={"url": redis_url}, model={"name": str(model_dir)}, trainer=values)


async def log_turns(store: Store, user: str, turns: list[tuple[str, str]], *, chat: str = "c1") -> None:
    """Record exchanges the way the brain does after a reply (logged only while the user is opted in)."""
    for text, reply in turns:
        state = await store.chats.load_state(user, user.split(":")[0], chat, False)
        await store.chats.record_turn(
            user, chat, since=state.since,
            user_turn={"role": "user", "text": text, "ts": 0, "tokens": 8},
            assistant_turn={"role": "assistant", "text": reply, "ts": 0, "tokens": 8},
            max_turns=10, max_tokens=1000, ttl_s=3600, display_name="", persona="assistant",
        )  # fmt: skip


async def seed_community(
    redis_url: str, users: int = 4, turns: int = 18, answer: str = ANSWER, first: int = 100
) -> None:
    """Opted-in users asking about Paris, answered the same way: an adapter learns it in a few steps."""
    store = Store(connect(redis_url))
    try:
        for u in range(first, first + users):
            user = f"telegram:{u}"
            await store.profiles.opt_in(user, "2026-11")
            for i in range(turns):
                await log_turns(store, user, [(question(i + 18 * u), answer)], chat=f"c{i // 3}")
    finally:
        await store.close()


def files_under(*roots: Path) -> list[Path]:
    return [path for root in roots if root.exists() for path in root.rglob("*") if path.is_file()]


def write_config(path: Path, settings: Settings) -> Path:
    """The settings as a YAML file for a `trainer` subprocess (OWNCHAT_CONFIG)."""
    import yaml

    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return path


def trainer_process(config: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OWNCHAT_CONFIG": str(config), "PYTHONPATH": str(Path.cwd())}
    command = [str(Path(sys.executable).with_name("trainer")), *args]  # the installed console script
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_checkpoint(runs_dir: Path, process: subprocess.Popen, timeout: float = 180.0) -> Path:
    """The first checkpoint that ``process`` writes (in a run folder that did not exist before)."""
    before = set(runs_dir.glob("*")) if runs_dir.exists() else set()

    def written() -> Path | None:
        for run in set(runs_dir.glob("*")) - before:
            checkpoint = run / "targets" / "community" / "checkpoint" / "state.pt"
            if checkpoint.is_file():
                return checkpoint
        if process.poll() is not None:
            raise AssertionError(f"the trainer ended early:\n{process.stdout.read().decode()}")
        return None

    return eventually_sync(written, f"a checkpoint of the community's fine-tune under {runs_dir}", timeout=timeout)
