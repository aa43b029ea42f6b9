"""One target's fine-tune in a process of its own, as the nightly run starts it under a launcher:

    torchrun --nproc_per_node 2 -m trainer.nightly.worker RUN_DIR/targets/community/job.json

It writes result.json beside the adapter (see lora.py); the run reads it from there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainer.nightly.lora import FinetuneJob, finetune


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m trainer.nightly.worker JOB.json", file=sys.stderr)
        return 2
    finetune(FinetuneJob.load(Path(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
