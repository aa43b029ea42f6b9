"""Stored values read back: a value an older version wrote, or a damaged one, is skipped (and said in the log)
rather than failing every request that reads it."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from brain.feedback_records import RatingRecord, TurnRecord
from brain.registry_records import RecordFormatError

log = logging.getLogger("brain.store")


def json_object(raw: str | None, what: str) -> dict[str, Any] | None:
    """A stored JSON object; None for none, and for one that is not (said in the log)."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as error:
        log.error("a stored %s was skipped: not JSON (%s)", what, error)
        return None
    if not isinstance(value, dict):
        log.error("a stored %s was skipped: not a JSON object", what)
        return None
    return value


def readable(raws: list[str], model: type[BaseModel], what: str) -> list[dict[str, Any]]:
    """The stored items that the API's model of them accepts, as stored; each other one is said in the log and
    skipped, so that what is read back is always what the routes can answer with."""
    items = []
    for raw in raws:
        item = json_object(raw, what)
        if item is None:
            continue
        try:
            model.model_validate(item)
        except ValidationError as error:
            log.error("a stored %s was skipped: %s", what, error)
            continue
        items.append(item)
    return items


def turn_record(raw: str | None) -> TurnRecord | None:
    """A stored turn; None for one of another format (said in the log), which is then as good as expired."""
    if not raw:
        return None
    try:
        return TurnRecord.loads(raw)
    except RecordFormatError as error:
        log.error("a turn record was skipped: %s", error)
        return None


def rating_record(raw: str | None) -> RatingRecord | None:
    if not raw:
        return None
    try:
        return RatingRecord.loads(raw)
    except RecordFormatError as error:
        log.error("a rating was skipped: %s", error)
        return None


def chat_persona(raw: str | None) -> dict[str, Any] | None:
    """A stored chat persona as its choice, without the author it is stored with."""
    persona = json_object(raw, "chat persona")
    if persona is not None:
        persona.pop("author", None)
    return persona


def chat_persona_author(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        author = json.loads(raw).get("author")
    except (ValueError, AttributeError):
        return None
    return author if isinstance(author, str) else None
