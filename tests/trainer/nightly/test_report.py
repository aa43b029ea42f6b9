"""The run's report is a typed, versioned record: what a run writes reads back the same, and a report of
another version is refused, saying so, by every reader (`trainer status`, the plot of later runs)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from trainer.cli import app
from trainer.core.finetuning import FinetuneResult
from trainer.nightly.report import (
    Outcome,
    ReportVersionError,
    RunReport,
    ScoreSet,
    print_report,
    read_report,
    write_report,
)
from trainer.nightly.runs import readable_reports
from trainer.nightly.scoring import Scores


def scores(name: str, test_ppl: float) -> Scores:
    return Scores(name=name, test_ppl=test_ppl, general_ppl=40.0, bleu=math.nan, chrf=20.0)


def finished_run(runs: Path, name: str) -> Path:
    tuned = FinetuneResult(
        steps=5, best_step=5, best_val_loss=0.5, base_val_loss=2.0, stopped_early=False, resumed_from=None,
        train_examples=10, val_examples=2, history={"train": [[1, 1.5]], "val": [[0, 2.0], [5, 0.5]], "lr": []},
    )  # fmt: skip
    outcome = Outcome(
        target="community", status="promoted", reasons=["better"], turns=30, version=1, finetune=tuned,
        scores=ScoreSet(base=scores("base", 9.0), live=scores("base", 9.0), candidate=scores("candidate", 3.0)),
    )  # fmt: skip
    report = RunReport(run=name, started_at="2026-11-02T03:00:00+00:00", status="finished", targets=[outcome])
    (runs / name).mkdir(parents=True)
    write_report(runs / name, report)
    return runs / name


def test_a_report_reads_back_as_it_was_written(tmp_path: Path) -> None:
    run = finished_run(tmp_path, "20261102T030000Z-aaaa")
    report = read_report(run)
    assert report.version == 1 and report.status == "finished"
    outcome = report.outcome("community")
    assert outcome.status == "promoted" and outcome.finetune.best_val_loss == 0.5
    assert math.isnan(outcome.scores.candidate.bleu), "a BLEU of no replies stays NaN, not null"
    with pytest.raises(ValueError):
        Outcome(target="community", status="promised", reasons=[])


def test_a_report_of_another_version_is_refused_and_says_why(redis_server, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    finished_run(runs, "20261101T030000Z-aaaa")
    old = runs / "20261102T030000Z-bbbb"
    old.mkdir()
    (old / "report.json").write_text(json.dumps({"run": old.name, "status": "finished", "targets": []}))

    with pytest.raises(
        ReportVersionError, match="written before reports carried a version; this trainer reads version 1"
    ):
        read_report(old)
    assert [r.run for r in readable_reports(runs)] == ["20261101T030000Z-aaaa"], "the plot's history leaves it out"

    env = {"OWNCHAT_REDIS__URL": redis_server.url, "OWNCHAT_TRAINER__RUNS_DIR": str(runs),
           "OWNCHAT_TRAINER__REGISTRY_DIR": str(tmp_path / "registry")}  # fmt: skip
    shown = CliRunner().invoke(app, ["status"], env=env, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    said = " ".join(shown.output.split())  # as read, whatever the terminal's width wrapped
    assert f"last run: {old.name}:" in said and "before reports carried a version" in said
    as_json = json.loads(CliRunner().invoke(app, ["status", "--json"], env=env, catch_exceptions=False).output)
    assert as_json["last_run"]["run"] == old.name and "version 1" in as_json["last_run"]["refused"]


@pytest.mark.parametrize("width", [80, 200])
def test_the_report_keeps_names_and_statuses_whole_at_any_terminal_width(tmp_path: Path, width: int) -> None:
    report = read_report(finished_run(tmp_path, "20261102T030000Z-aaaa"))
    promoted = report.targets[0]
    report.targets += [
        Outcome(target="user-0123456789abcdef", status="skipped", reasons=["too few turns"], turns=3),
        promoted.model_copy(update={"target": "user-fedcba9876543210", "status": "canary", "version": 12}),
    ]
    screen = Console(file=io.StringIO(), width=width, color_system=None)

    print_report(report, screen)

    shown = screen.file.getvalue()
    assert "…" not in shown
    assert max(len(line) for line in shown.splitlines()) <= width
    # members' targets by the run's aliases, in the order they are named (print_report)
    for name, status in [("community", "promoted v1"), ("member-1", "skipped"), ("member-2", "canary v12")]:
        assert any(name in line and status in line for line in shown.splitlines()), shown
    assert "3.00" in shown and "9.00" in shown  # the candidate's and the base's test perplexity
