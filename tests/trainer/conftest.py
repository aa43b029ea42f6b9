from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from trainer.core.config import PretrainConfig
from trainer.pretrain.train import PretrainResult, pretrain

TINY = dict(
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    batch_size=8,
    max_steps=60,
    eval_every=20,
    eval_batches=4,
    warmup_steps=5,
    lr=5e-3,
)


def toy_corpus(lines: int = 800, seed: int = 0) -> str:
    """Sentences of a tiny grammar: enough structure for a small model to learn within a few steps."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "my friend", "the king", "our queen", "a sailor"]
    verbs = ["sees", "likes", "finds", "loves", "calls", "follows"]
    objects = ["the moon", "a bird", "the sea", "his horse", "her crown", "the old road"]
    return "".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}.\n" for _ in range(lines))


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "toy.txt"
    path.write_text(toy_corpus())
    return path


@dataclass
class GPTRun:
    result: PretrainResult
    data: Path

    @property
    def dir(self) -> Path:
        return self.result.out_dir


@pytest.fixture(scope="session")
def gpt_run(tmp_path_factory: pytest.TempPathFactory, corpus_file: Path) -> GPTRun:
    """One tiny pretraining run (a couple of seconds), shared by the tests that need a trained model."""
    out = tmp_path_factory.mktemp("gpt-run")
    result = pretrain(PretrainConfig(data=str(corpus_file), out_dir=str(out), **TINY), progress=False)
    return GPTRun(result=result, data=corpus_file)
