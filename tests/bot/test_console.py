"""The terminal console against a real brain: streamed replies and the shared commands."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx


def run_console(brain, lines: list[str]) -> str:
    env = {**os.environ, "OWNCHAT_API_KEY": brain.api_key, "COLUMNS": "200", "TERM": "dumb"}
    run = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--brain-url", brain.url, "--user", "ann"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_console_chats_and_runs_commands(brain):
    out = run_console(brain, ["/help", "/persona tutor", "hello there", "/memory", "/optin", "/optin yes"])
    assert "/forget" in out and "/persona" in out  # help lists the commands
    assert "/good or /bad" in out and "React" not in out  # and how to rate here, where nobody can react
    assert "Persona set for you: tutor." in out
    assert "bot>" in out
    assert "Persona: tutor" in out and "Recent turns remembered here: 2" in out
    assert "What I keep, and why." in out and "/optin yes" in out
    assert "you are opted in" in out


def test_console_forget_asks_first(brain):
    out = run_console(brain, ["hello", "/forget", "/memory"])
    assert "Send /forget yes to confirm" in out
    assert "Recent turns remembered here: 2" in out  # nothing deleted without confirmation
    out = run_console(brain, ["/forget yes", "/memory"])
    assert "I forgot you" in out and "Recent turns remembered here: 0" in out


def test_console_with_an_embedded_brain(tmp_path, tiny_model_dir, redis_server):
    env = {
        **os.environ,
        "OWNCHAT_MODEL__NAME": str(tiny_model_dir),
        "OWNCHAT_MODEL__MAX_NEW_TOKENS": "8",
        "OWNCHAT_REDIS__URL": redis_server.url,
        "TERM": "dumb",
    }
    run = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--embedded", "--user", "eve"],
        input="hello\n/memory\n", capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "bot>" in run.stdout and "Recent turns remembered here: 2" in run.stdout


def test_console_rates_the_last_reply_and_answers_again(brain):
    out = run_console(brain, ["/good", "/optin yes", "hello", "/good", "/retry", "/bad"])

    assert "Nothing to rate yet" in out
    assert "You liked this reply. Thanks: your rating is kept" in out
    assert "You disliked this reply." in out
    assert out.count("bot>") == 2  # the reply, and the second one /retry asked for
    export = httpx.get(f"{brain.url}/v1/users/console/ann/export", headers=brain.headers()).json()
    first, second = export["ratings"]
    assert (first["rating"], second["rating"]) == (1, -1) and first["turn_id"] != second["turn_id"]
