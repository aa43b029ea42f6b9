"""Model profiles: the memory and DRY settings follow the model, and whatever the operator sets wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brain.cli import app
from brain.profiles import CAPABLE, SMALL, choose_profile
from brain.settings import load_settings


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("smollm2-135m-instruct", SMALL),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", SMALL),
        ("/models/SmolLM2-135M-Instruct/", SMALL),
        ("Qwen/Qwen2.5-7B-Instruct", CAPABLE),
        ("/models/llama-3.1-8b-instruct", CAPABLE),
        ("HuggingFaceTB/SmolLM2-1.7B-Instruct", CAPABLE),
    ],
)
def test_the_profile_is_chosen_by_the_model(name: str, profile) -> None:
    chosen, why = choose_profile(name)
    assert chosen is profile and name in why


def test_the_default_model_gets_what_the_benches_found_best() -> None:
    settings = load_settings()
    assert settings.profile["name"] == "small"
    assert settings.memory.max_turns == 2 and settings.memory.summaries is False
    assert settings.model.dry.multiplier > 0 and settings.model.dry.sequence_breakers == ["\n"]


def test_any_other_model_gets_a_capable_chat_models_profile() -> None:
    settings = load_settings(model={"name": "Qwen/Qwen2.5-7B-Instruct"})
    assert settings.profile["name"] == "capable"
    assert settings.memory.max_turns == CAPABLE.max_turns and settings.memory.summaries is True
    assert settings.memory.fold_every_turns == CAPABLE.fold_every_turns
    assert settings.model.dry.multiplier == 0.0


def test_explicit_settings_win_from_the_environment_and_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "ownchat.yaml"
    config.write_text("memory:\n  max_turns: 8\nmodel:\n  dry:\n    multiplier: 0.0\n")
    monkeypatch.setenv("OWNCHAT_CONFIG", str(config))
    monkeypatch.setenv("OWNCHAT_MEMORY__SUMMARIES", "true")
    settings = load_settings()
    assert settings.profile["name"] == "small"
    assert settings.memory.max_turns == 8 and settings.memory.summaries is True
    assert settings.model.dry.multiplier == 0.0
    assert settings.model.dry.penalty_last_n == SMALL.dry_penalty_last_n, "what was left unset follows the profile"
    filled = settings.profile["filled"]
    assert not {"memory.max_turns", "memory.summaries", "model.dry.multiplier"} & set(filled)
    assert "model.dry.base" in filled
    # a profile named explicitly beats the one chosen by the model, explicit values still win over it
    named = load_settings(model={"profile": "capable"})
    assert named.profile["name"] == "capable" and "model.profile" in named.profile["why"]
    assert named.memory.max_turns == 8


def test_brain_config_shows_the_profile_in_force_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNCHAT_MODEL__NAME", "Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setenv("OWNCHAT_MEMORY__MAX_TURNS", "12")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["profile_in_force"]["name"] == "capable"
    assert "Qwen/Qwen2.5-7B-Instruct" in shown["profile_in_force"]["why"]
    assert shown["memory"]["max_turns"] == 12 and "memory.max_turns" not in shown["profile_in_force"]["filled"]
