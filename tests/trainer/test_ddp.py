"""The same pretraining command runs data-parallel under torchrun: two CPU processes over gloo."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_pretraining_runs_in_two_processes_under_torchrun(tmp_path, corpus_file):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    out = tmp_path / "ddp"
    command = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "trainer.cli",
        "pretrain",
        "--data",
        str(corpus_file),
        "--out",
        str(out),
        "--layers",
        "2",
        "--heads",
        "2",
        "--width",
        "32",
        "--context",
        "32",
        "--batch-size",
        "4",
        "--steps",
        "30",
        "--eval-every",
        "15",
        "--eval-batches",
        "4",
        "--warmup",
        "3",
        "--lr",
        "5e-3",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    meta = json.loads((out / "checkpoints" / "last" / "checkpoint.json").read_text())
    assert meta["world_size"] == 2
    assert meta["tokens_per_step"] == 2 * 4 * 32  # both processes' batches make one step
    assert meta["step"] == 30
    val = meta["history"]["val"]
    assert val[-1][1] < val[0][1] - 0.5
    assert (out / "model.safetensors").is_file()
