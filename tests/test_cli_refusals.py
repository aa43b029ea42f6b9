"""Every command line refuses a start it cannot make as an operator expects: one line on stderr that says what to
fix, a non-zero exit status, and no traceback. The real console scripts, in subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from brain.redis_local import free_port


def refusal(args: list[str], cwd: Path, **env: str) -> str:
    """Run ``python -m ARGS`` as an operator would, with no OWNCHAT_* settings but ``env``; its one line."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("OWNCHAT_")}
    clean |= {"PYTHONPATH": str(Path.cwd()), "COLUMNS": "80", "TERM": "dumb", **env}
    run = subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=clean, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("platform", ["telegram", "discord"])
def test_a_bot_without_its_token(platform: str, tmp_path: Path) -> None:
    line = refusal(["bot", platform], tmp_path)
    assert f"OWNCHAT_{platform.upper()}_TOKEN" in line


@pytest.mark.parametrize("command", [["brain", "config"], ["bot", "console"], ["trainer", "status"]])
def test_bad_settings_on_every_cli(command: list[str], tmp_path: Path) -> None:
    line = refusal(command, tmp_path, OWNCHAT_MODEL__MAX_NEW_TOKENS="many")
    assert "bad settings: model.max_new_tokens" in line and "'many'" in line


@pytest.mark.parametrize("command", [["brain", "serve"], ["bot", "telegram"], ["trainer", "nightly"]])
def test_a_settings_file_that_cannot_be_read(command: list[str], tmp_path: Path) -> None:
    assert "is not a file" in refusal(command, tmp_path, OWNCHAT_CONFIG=str(tmp_path / "missing.yaml"))
    broken = tmp_path / "ownchat.yaml"
    broken.write_text("model: [unclosed\n")
    assert f"{broken.name} is not valid YAML" in refusal(command, tmp_path, OWNCHAT_CONFIG=str(broken))


def test_a_secret_is_never_echoed(tmp_path: Path) -> None:
    line = refusal(["brain", "config"], tmp_path, OWNCHAT_API_KEY="changeme")
    assert "placeholder" in line and "changeme" not in line


def test_the_brain_on_a_taken_port(taken_port: int, tmp_path: Path, tiny_model_dir: Path) -> None:
    line = refusal(["brain", "serve", "--port", str(taken_port)], tmp_path, OWNCHAT_MODEL__NAME=str(tiny_model_dir))
    assert f"cannot listen on 127.0.0.1:{taken_port}" in line and "--port" in line


def test_the_brain_without_its_model(tmp_path: Path) -> None:
    line = refusal(["brain", "serve", "--model", str(tmp_path / "no-model"), "--port", str(free_port())], tmp_path)
    assert f"{tmp_path / 'no-model'} does not exist" in line
    assert "does not exist" in refusal(["brain", "prepare-model", "--model", str(tmp_path / "no-model")], tmp_path)


def test_the_brain_exposed_without_a_key(tmp_path: Path) -> None:
    assert "without an API key" in refusal(["brain", "serve"], tmp_path, OWNCHAT_BRAIN__HOST="0.0.0.0")


def test_the_brain_cannot_start_a_remote_redis(tmp_path: Path, tiny_model_dir: Path) -> None:
    line = refusal(
        ["brain", "serve", "--start-redis", "--port", str(free_port())], tmp_path,
        OWNCHAT_MODEL__NAME=str(tiny_model_dir), OWNCHAT_REDIS__URL="redis://192.0.2.1:6379/0",
        OWNCHAT_REDIS__SOCKET_TIMEOUT_S="0.2",
    )  # fmt: skip
    assert "no Redis answers at redis://192.0.2.1:6379/0" in line


def test_the_console_with_no_brain(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = refusal(["bot", "console", "--brain-url", url], tmp_path)
    assert f"no brain answers at {url}" in line and "--start-brain" in line


def test_the_console_when_the_brain_it_starts_refuses(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = refusal(
        ["bot", "console", "--start-brain", "--brain-url", url], tmp_path,
        OWNCHAT_MODEL__NAME=str(tmp_path / "no-model"),
    )  # fmt: skip
    assert "the brain did not start: model directory" in line and "does not exist" in line and "var/brain.log" in line


def test_the_trainer_without_redis(tmp_path: Path) -> None:
    line = refusal(["trainer", "status"], tmp_path, OWNCHAT_REDIS__URL=f"redis://127.0.0.1:{free_port()}/0")
    assert "Redis does not answer" in line


def test_the_trainer_without_its_model(redis_server, tmp_path: Path) -> None:
    line = refusal(
        ["trainer", "nightly"], tmp_path,
        OWNCHAT_REDIS__URL=redis_server.url, OWNCHAT_MODEL__NAME=str(tmp_path / "no-model"),
        OWNCHAT_TRAINER__RUNS_DIR=str(tmp_path / "runs"), OWNCHAT_TRAINER__REGISTRY_DIR=str(tmp_path / "registry"),
    )  # fmt: skip
    assert "does not exist" in line
