from __future__ import annotations

import shutil

import pytest

MISSING = (
    "Chromium is missing: the dashboard's browser tests were SKIPPED. Install it with: apt-get install -y chromium"
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Said at the end of the run too, where nobody misses it among the skips."""
    if chromium() is None:
        terminalreporter.write_sep("=", MISSING, yellow=True, bold=True)
