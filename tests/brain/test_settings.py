"""One settings object: defaults < YAML < environment; secrets from the environment only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from brain.settings import Settings


def test_yaml_overrides_defaults_and_env_overrides_yaml(tmp_path, monkeypatch):
    config = tmp_path / "ownchat.yaml"
    config.write_text("limits:\n  rate_per_minute: 5\nmodel:\n  max_batch_size: 4\n")
    monkeypatch.setenv("OWNCHAT_CONFIG", str(config))
    monkeypatch.setenv("OWNCHAT_MODEL__MAX_BATCH_SIZE", "8")
    settings = Settings()
    assert settings.limits.rate_per_minute == 5
    assert settings.model.max_batch_size == 8
    assert settings.memory.max_turns == Settings.model_fields["memory"].default.max_turns


def test_a_secret_in_the_yaml_file_is_refused(tmp_path, monkeypatch):
    config = tmp_path / "ownchat.yaml"
    config.write_text("bot:\n  telegram:\n    telegram_token: 123:abc\n")
    monkeypatch.setenv("OWNCHAT_CONFIG", str(config))
    with pytest.raises(ValueError, match="only come from the environment"):
        Settings()


def test_placeholder_secrets_are_refused(monkeypatch):
    monkeypatch.setenv("OWNCHAT_API_KEY", "changeme")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()


def test_brain_config_masks_secrets(monkeypatch):
    env = {"OWNCHAT_API_KEY": "s3cret-value-123", "OWNCHAT_DISCORD_TOKEN": "tok-999", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-m", "brain", "config"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "s3cret-value-123" not in out and "tok-999" not in out
    data = json.loads(out)
    assert data["secrets"]["api_key"] == "***" and data["secrets"]["telegram_token"] is None


def test_brain_config_shows_every_part_from_yaml_and_environment(tmp_path):
    config = tmp_path / "ownchat.yaml"
    config.write_text(
        "bot:\n  discord:\n    edit_interval_s: 2.5\ntrainer:\n  finetune:\n    r: 16\n  canary:\n    share: 0.3\n"
    )
    env = {
        "OWNCHAT_CONFIG": str(config),
        "OWNCHAT_TRAINER__CANARY__SHARE": "0.1",
        "OWNCHAT_BOT__TELEGRAM__PARSE_MODE": "HTML",
        "OWNCHAT_MEMORY__RECALL_TOKENS": "64",
        "PATH": "",
    }
    out = subprocess.run(
        [sys.executable, "-m", "brain", "config"], capture_output=True, text=True, env=env, check=True
    ).stdout
    data = json.loads(out)
    assert data["bot"]["discord"]["edit_interval_s"] == 2.5 and data["bot"]["telegram"]["parse_mode"] == "HTML"
    assert data["trainer"]["finetune"]["r"] == 16 and data["trainer"]["canary"]["share"] == 0.1  # env over YAML
    assert data["memory"]["recall_tokens"] == 64
    assert set(data) >= {"redis", "model", "memory", "limits", "feedback", "brain", "bot", "trainer", "secrets"}


def test_brain_refuses_a_public_address_without_a_key():
    env = {"OWNCHAT_BRAIN__HOST": "0.0.0.0", "PATH": ""}
    run = subprocess.run([sys.executable, "-m", "brain", "serve"], capture_output=True, text=True, env=env)
    assert run.returncode != 0
    assert "without an API key" in run.stderr
