"""Persona presets (YAML files beside this module, plus an optional operator folder), custom
personas, and SillyTavern ``chara_card_v2`` cards turned into personas."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from brain.api_models import Persona, PersonaScope, PersonaState

PRESETS_DIR = Path(__file__).parent
log = logging.getLogger("brain.personas")


class PersonaError(ValueError):
    """A persona that cannot be used, with a sentence saying why."""


def load_presets(extra_dir: str | Path | None = None) -> dict[str, Persona]:
    presets: dict[str, Persona] = {}
    folders = [PRESETS_DIR] + ([Path(extra_dir)] if extra_dir else [])
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            try:
                persona = Persona.model_validate(yaml.safe_load(path.read_text()))
            except (ValidationError, yaml.YAMLError) as exc:
                raise PersonaError(f"persona file {path.name} is not valid: {exc}") from exc
            presets[persona.name] = persona
    return presets


def custom_persona(text: str, max_chars: int) -> dict[str, Any]:
    text = text.strip()
    if len(text) > max_chars:
        raise PersonaError(f"a custom persona may be at most {max_chars} characters; this one has {len(text)}")
    return {"name": "custom", "custom": True, "system_prompt": text, "greeting": ""}


CARD_NAME_CHARS = 100


def expand(text: str, macros: dict[str, str], limit: int) -> str:
    """``text`` with each macro replaced, refused before it is built when the result would exceed ``limit``
    characters (a card can nest macros so that its expansion grows without bound)."""
    size = len(text) + sum(text.count(macro) * (len(value) - len(macro)) for macro, value in macros.items())
    if size > limit:
        raise PersonaError(f"the card's persona would be {size} characters; at most {limit} fit")
    for macro, value in macros.items():
        text = text.replace(macro, value)
    return text


def persona_from_card(card: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """A SillyTavern character card (spec chara_card_v2) as a custom persona."""
    if card.get("spec") != "chara_card_v2" or not isinstance(card.get("data"), dict):
        raise PersonaError("the card is not a chara_card_v2 card (expected spec 'chara_card_v2' and a 'data' object)")
    data = card["data"]
    name = str(data.get("name") or "").strip()
    if not name:
        raise PersonaError("the card has no character name (data.name)")
    if len(name) > CARD_NAME_CHARS:
        raise PersonaError(f"the card's character name may be at most {CARD_NAME_CHARS} characters")

    def fill(text: Any) -> str:
        text = str(text or "")
        return expand(text, {"{{char}}": name, "{{user}}": "the user"}, max_chars).strip()

    parts = [f"You are {name}."]
    for label, value in (("", data.get("description")), ("Personality: ", data.get("personality")),
                         ("Scenario: ", data.get("scenario"))):  # fmt: skip
        if fill(value):
            parts.append(label + fill(value))
    base = "\n".join(parts)
    own = fill(data.get("system_prompt"))
    system_prompt = expand(own, {"{{original}}": base}, max_chars) if own else base
    if fill(data.get("post_history_instructions")):
        system_prompt += "\n" + fill(data.get("post_history_instructions"))
    if len(system_prompt) > max_chars:
        raise PersonaError(f"the card's persona is {len(system_prompt)} characters; at most {max_chars} fit")
    # a persona's name starts with a letter or a digit (Persona.name): "_evil" is stored as "evil", "__" as "card"
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:48] or "card"
    return {
        "name": slug,
        "custom": True,
        "system_prompt": system_prompt,
        "greeting": fill(data.get("first_mes")),
    }


def preset_choice(name: str, presets: dict[str, Persona]) -> dict[str, Any]:
    if name not in presets:
        raise PersonaError(f"there is no persona called '{name}'; choose one of: {', '.join(sorted(presets))}")
    return {"name": name, "custom": False}


def persona_of(stored: dict[str, Any] | None, presets: dict[str, Persona], default: str) -> tuple[Persona, bool]:
    """The Persona for a stored choice (a preset by name, or a custom one; the default for none or a preset no
    longer there); PersonaError, saying why, for a choice that does not make a Persona. The one check of a persona:
    what a PUT would store must pass it before it is written, and what a chat reads back passes it again."""
    if stored is not None and not isinstance(stored, dict):
        raise PersonaError("a persona is a JSON object")
    if stored and stored.get("custom"):
        try:
            persona = Persona(
                name=stored["name"],
                description="custom",
                system_prompt=stored["system_prompt"],
                greeting=stored.get("greeting", ""),
                sampling=presets[default].sampling,
            )
        except KeyError as exc:
            raise PersonaError(f"a custom persona needs its {exc.args[0]}") from None
        except ValidationError as exc:
            raise PersonaError(_why(exc)) from None
        return persona, True
    if stored and stored.get("name") in presets:
        return presets[stored["name"]], False
    return presets[default], False


def resolve(stored: dict[str, Any] | None, presets: dict[str, Persona], default: str) -> tuple[Persona, bool]:
    """The Persona to use for a stored choice; the default for one that no longer makes a Persona (an older
    version's data), said in the log: a broken persona must not break every chat that uses it."""
    try:
        return persona_of(stored, presets, default)
    except PersonaError as exc:
        log.error("a stored persona was skipped, the default persona answers instead: %s", exc)
        return presets[default], False


# the fields of a persona as a member knows them
FIELD_NAMES = {"system_prompt": "persona's text", "greeting": "greeting (first_mes)", "name": "name"}


def _why(error: ValidationError) -> str:
    """A validation error of a persona as sentences a member can act on."""
    reasons = []
    for problem in error.errors():
        where = str(problem["loc"][0]) if problem["loc"] else ""
        field = FIELD_NAMES.get(where, where or "persona")
        limit = (problem.get("ctx") or {}).get("max_length")
        if problem["type"] == "string_too_long" and limit is not None:
            reasons.append(f"the {field} may be at most {limit} characters")
        else:
            reasons.append(f"the {field} is not valid: {problem['msg']}")
    return "; ".join(reasons)


def state(persona: Persona, custom: bool, scope: PersonaScope) -> PersonaState:
    return PersonaState(
        name=persona.name,
        custom=custom,
        scope=scope,
        system_prompt=persona.system_prompt,
        greeting=persona.greeting,
    )
