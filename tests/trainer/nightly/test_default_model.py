"""The nightly run with the real default model (SmolLM2-135M-Instruct, offline) on chatterbot-corpus
conversations as the community's opted-in logs; the general guard (public-domain prose, and questions the
base model answers right) holds."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest

from brain.adapters import COMMUNITY
from brain.settings import Settings
from brain.store import Store
from brain.store.client import connect
from trainer.nightly.corpus import community_chats, log_chats
from trainer.nightly.run import run_nightly

pytestmark = pytest.mark.integration


def test_the_community_adapter_is_clearly_better_and_the_guard_decides(redis_server, tmp_path) -> None:
    async def seed() -> None:
        store = Store(connect(redis_server.url))
        await log_chats(store, community_chats(400, exclude=[]), users=8, consent="2026-11")
        await store.close()

    asyncio.run(seed())
    settings = Settings(
        redis={"url": redis_server.url},
        model={"name": "smollm2-135m-instruct"},
        trainer={
            "runs_dir": str(tmp_path / "runs"),
            "registry_dir": str(tmp_path / "registry"),
            "min_user_turns": 10_000,  # the community adapter only: the figure this test is about
            "finetune": {
                "r": 8, "alpha": 16, "learning_rate": 2e-3, "max_steps": 24, "warmup_steps": 3, "batch_size": 8,
                "eval_every": 12, "checkpoint_every": 12, "max_seq_tokens": 256,
                # the gate's guard deciding is what this test is about: the fine-tune keeps its best step, guard or not
                "keep_within_guard": False,
                # replay's greedy answers cost the default model minutes on a CPU (test_retain.py tests it)
                "retain_questions": 0,
            },
            "evaluation": {"bleu_samples": 8, "bleu_max_new_tokens": 24, "question_max_new_tokens": 24},
            "canary": {"share": 0.0},
        },
    )  # fmt: skip

    started = time.perf_counter()
    report = run_nightly(settings)
    elapsed = time.perf_counter() - started

    community = report.outcome(COMMUNITY)
    base, candidate = community.scores.base, community.scores.candidate
    print(
        f"\ntest perplexity: base {base.test_ppl:.2f} -> candidate {candidate.test_ppl:.2f}; "
        f"general prose: base {base.general_ppl:.2f} -> candidate {candidate.general_ppl:.2f}; "
        f"questions right: base {sum(base.answers_right)} -> candidate {sum(candidate.answers_right)} "
        f"of {len(base.answers_right)}; "
        f"BLEU {base.bleu:.2f} -> {candidate.bleu:.2f}; chrF {base.chrf:.2f} -> {candidate.chrf:.2f}; "
        f"{community.finetune.steps} steps on {community.finetune.train_examples} examples, "
        f"{elapsed:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB"
    )
    assert candidate.test_ppl < 0.8 * base.test_ppl
    assert candidate.general_ppl <= 1.05 * base.general_ppl
    assert all(base.answers_right), "the shipped questions are ones the base model answers right"
    # this fine-tune (ten times the default learning rate) tends to forget a fact or two, e.g. answering "Mexican
    # is the official language of Mexico": the guard must then keep it from going live, and say which it lost
    lost = [i + 1 for i, right in enumerate(candidate.answers_right) if not right]
    if lost:
        named = f"loses question{'s' if len(lost) > 1 else ''} {', '.join(map(str, lost))}"
        assert community.status == "kept" and community.reasons[0].endswith(named), community.reasons
    else:
        assert community.status == "promoted", community.reasons
