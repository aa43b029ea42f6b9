"""`trainer`: the trainer's command line. Each command group is a typer app of its own, registered here;
the groups import nothing of each other, nor of this module."""

from __future__ import annotations

import os

# OpenMP threads that spin while they wait slow torch down many times over on a machine shared with
# other work; they must be told before torch loads, which the commands do lazily
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from brain.refusals import RefusingTyper  # noqa: E402
from trainer.commands import personalization, training  # noqa: E402

app = RefusingTyper(
    help="Pretrain a GPT from scratch, fine-tune, sample and evaluate causal language models.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(training.app)
app.add_typer(personalization.app)

if __name__ == "__main__":
    app()
