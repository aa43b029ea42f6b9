"""The runs directory: one folder per nightly run, named by its start time so that names sort by age.

A run's data (the export, the splits, checkpoints, candidate adapters) is personal data: it is deleted once
newer runs have replaced it, and at once when a user it holds has been forgotten. Reports and their plots
stay, less what they said of a forgotten user's own adapter.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from brain.adapters import USER_PREFIX
from trainer.nightly.export import MANIFEST
from trainer.nightly.files import read_json, write_json
from trainer.nightly.link import RedisLink
from trainer.nightly.report import REPORT, ReportVersionError, RunReport, parse_report, read_report
from trainer.nightly.report_plot import PLOT, write_plot

DATA_PARTS = ("export", "data", "targets")
CARRY = "carry.json"  # in a target's folder of a run, beside its candidate adapter
USER_TARGET = re.compile(re.escape(USER_PREFIX) + r"[0-9a-f]{16}")
FORGOTTEN = "[forgotten]"


class Carry(BaseModel):
    """A candidate the gate kept out only for want of evidence, left for the next night to go on from (run data:
    it goes with the run's other data, at once when one it learned from is forgotten)."""

    live: str  # what served the target when it was trained: the live version's name, or "base"
    learned_from: list[str]  # tombstone members whose data is in its weights


def new_run_dir(runs_dir: str | Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = Path(runs_dir).expanduser() / f"{stamp}-{uuid.uuid4().hex[:4]}"
    path.mkdir(parents=True)
    return path


def run_dirs(runs_dir: str | Path) -> list[Path]:
    """Every run, oldest first."""
    root = Path(runs_dir).expanduser()
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def report_dirs(runs_dir: str | Path) -> list[Path]:
    """Every run that wrote its report, oldest first."""
    return [run for run in run_dirs(runs_dir) if (run / REPORT).is_file()]


def readable_reports(runs_dir: str | Path) -> list[RunReport]:
    """The reports of this trainer's version, oldest first; those of another version are left out."""
    runs = report_dirs(runs_dir)
    return _readable([read_json(run / REPORT) for run in runs], runs)


def _readable(reports: list[dict], runs: list[Path]) -> list[RunReport]:
    readable = []
    for data, run in zip(reports, runs, strict=True):
        try:
            readable.append(parse_report(data, run / REPORT))
        except ReportVersionError:
            continue
    return readable


def has_data(run: Path) -> bool:
    return any((run / part).exists() for part in DATA_PARTS)


def delete_data(run: Path) -> None:
    for part in DATA_PARTS:
        shutil.rmtree(run / part, ignore_errors=True)


def purge_run_data(runs_dir: str | Path, link: RedisLink, *, keep: int, current: Path | None) -> list[str]:
    """Delete the data of all but the newest ``keep`` other runs, and of every run holding a forgotten user."""
    others = [run for run in run_dirs(runs_dir) if run != current and has_data(run)]
    doomed = set(others[: max(0, len(others) - keep)])
    for run in others:
        if run in doomed:
            continue
        if not (run / MANIFEST).is_file():  # killed while exporting: whose data it holds is unknown
            doomed.add(run)
        elif link.call(link.store.tombstones.tombstoned(_holds(run))):
            doomed.add(run)
    for run in doomed:
        delete_data(run)
    return sorted(run.name for run in doomed)


def _holds(run: Path) -> list[str]:
    """Whose data a run holds: its export's users, and whom its carried candidates learned from."""
    members = set(read_json(run / MANIFEST).get("user_hashes", []))
    for path in (run / "targets").glob(f"*/{CARRY}"):
        members.update(Carry.model_validate(read_json(path)).learned_from)
    return sorted(members)


def carried(runs_dir: str | Path, target: str, live: str, current: Path) -> tuple[Path, Carry] | None:
    """The candidate adapter the newest earlier run that trained ``target`` left to go on from, if it left one
    and ``live`` (the version's name, or "base") still serves what it was trained beside."""
    for run in reversed(run_dirs(runs_dir)):
        folder = run / "targets" / target
        if run == current or not folder.is_dir():
            continue
        if not (folder / CARRY).is_file() or not (folder / "adapter").is_dir():
            return None
        carry = Carry.model_validate(read_json(folder / CARRY))
        return (folder / "adapter", carry) if carry.live == live else None
    return None


def interrupted(runs_dir: str | Path, target: str, current: Path) -> list[Path]:
    """The target folders that earlier unfinished runs left with a checkpoint, newest first."""
    found = []
    for run in reversed(run_dirs(runs_dir)):
        folder = run / "targets" / target
        if run != current and not _finished(run) and (folder / "checkpoint" / "state.pt").is_file():
            found.append(folder)
    return found


def _finished(run: Path) -> bool:
    if not (run / REPORT).is_file():
        return False
    try:
        return read_report(run).status == "finished"
    except ReportVersionError:  # a run of an older trainer: its checkpoints are of an older layout too
        return True


def redact_reports(runs_dir: str | Path, forgotten: set[str]) -> list[str]:
    """Take every mention of these user targets (of forgotten users) out of the kept reports, of whatever
    version, and draw the plot of each changed report again without them. Returns the runs whose report
    changed."""
    runs = report_dirs(runs_dir)
    reports = [read_json(run / REPORT) for run in runs]
    changed = []
    for index, run in enumerate(runs):
        named = set(USER_TARGET.findall(json.dumps(reports[index]))) & forgotten
        if named:
            reports[index] = _redact(reports[index], named)
            write_json(run / REPORT, reports[index])
            changed.append(index)
    for index in changed:  # each plot as it was drawn: its own run and the runs before it
        try:
            report = parse_report(reports[index], runs[index] / REPORT)
            drawn = write_plot(runs[index], report, _readable(reports[: index + 1], runs[: index + 1]))
        except ReportVersionError:  # a report of another version: no plot rather than one naming them
            drawn = None
        if drawn is None:
            (runs[index] / PLOT).unlink(missing_ok=True)
    return [runs[index].name for index in changed]


def _redact(report: dict, targets: set[str]) -> dict:
    outcomes = [o for o in report.get("targets", []) if o.get("target") not in targets]
    redacted = {**report, "targets": outcomes} if "targets" in report else dict(report)
    if isinstance(report.get("purged_targets"), list):
        redacted["purged_targets"] = len(report["purged_targets"])
    text = json.dumps(redacted)
    for target in targets:  # anything else that names them, such as a reason
        text = text.replace(target, FORGOTTEN)
    return json.loads(text)
