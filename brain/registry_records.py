"""The records trainer and brain exchange through the model registry in Redis, typed.

``trainer nightly`` writes them (trainer/nightly/registry.py); every brain reads them (brain/adapters.py);
brain/store/ stores them under the keys it names. A version folder's ``meta.json`` (VersionMeta) is the
one record kept on disk rather than in Redis. Each carries ``format``, the layout it was written in: a
reader of another format refuses it with a RecordFormatError that says which side to upgrade, rather than
misreading it. (Records written before formats were recorded have the layout of format 1.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RECORD_FORMAT = 1
META_FILE = "meta.json"  # in each version folder: <registry_dir>/TARGET/vN/meta.json
# promote: a new version went live; rollback: an operator went back; forget: a forgotten user's data left it;
# remove: a user's own adapter was deleted; canary: a candidate began or ended serving a share of members
Action = Literal["promote", "rollback", "forget", "remove", "canary"]
R = TypeVar("R", bound="RegistryRecord")


class RecordFormatError(ValueError):
    """A registry record of another layout than this ownchat's, or one it cannot read."""


class RegistryRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = RECORD_FORMAT

    def dumps(self) -> str:
        return self.model_dump_json()

    @classmethod
    def loads(cls: type[R], raw: str | bytes) -> R:
        """The record in ``raw``; RecordFormatError for another format or a record that does not fit."""
        try:
            data: Any = json.loads(raw)
        except ValueError as error:
            raise RecordFormatError(f"a {cls.__name__} that is not JSON: {error}") from None
        found = data.get("format", 1) if isinstance(data, dict) else None
        if found != RECORD_FORMAT:
            newer = isinstance(found, int) and found > RECORD_FORMAT
            raise RecordFormatError(
                f"a {cls.__name__} of format {found!r}, but this ownchat reads format {RECORD_FORMAT}: "
                + ("upgrade this side (brain or trainer) to match the other" if newer else "upgrade the writer")
            )
        try:
            return cls.model_validate({**data, "format": RECORD_FORMAT})
        except ValidationError as error:
            raise RecordFormatError(f"a {cls.__name__} that does not fit format {RECORD_FORMAT}: {error}") from None


class LiveAdapter(RegistryRecord):
    """What serves one target now (``oc:registry`` field TARGET)."""

    version: int = Field(ge=1)
    name: str  # the served name, e.g. community@3
    path: str  # the version's directory, relative to the registry root
    metrics: dict[str, float | None] = Field(default_factory=dict)
    base_model: str | None = None
    promoted_at: str
    user: str | None = None  # the owner of a user target (platform:id)


class RegistryEvent(RegistryRecord):
    """One change of what is live, kept in the target's history (``oc:registry:history:TARGET``)."""

    action: Action
    version: int | None  # live after the change; None: the base model serves
    previous: int | None = None
    at: str
    metrics: dict[str, float | None] | None = None
    run: str | None = None  # the nightly run that trained the version


class ReloadEvent(RegistryRecord):
    """Published on ``oc:registry:reload``: every brain re-reads the registry now."""

    target: str
    version: int | None
    action: Action


class VersionMeta(RegistryRecord):
    """A version folder's ``meta.json``: written once by the trainer as it adds the version, read by every brain
    before it loads the adapter (the base model it was trained on) and by the trainer when it promotes the
    version or takes a forgotten member's data out of service (whom it learned from)."""

    target: str
    version: int = Field(ge=1)
    created_at: str
    base_model: str
    run: str | None = None  # the nightly run that trained it
    metrics: dict[str, float | None] = Field(default_factory=dict)
    user_hash: str | None = None  # a user target's: its owner's tombstone member
    user_hashes: list[str] = Field(default_factory=list)  # the community's: everyone whose data it learned from

    @classmethod
    def read(cls, folder: Path) -> VersionMeta:
        """The meta.json in the version folder ``folder`` (FileNotFoundError where there is none); a
        RecordFormatError naming the file for one that is not this record."""
        path = folder / META_FILE
        raw = path.read_bytes()
        try:
            return cls.loads(raw)
        except RecordFormatError as error:
            raise RecordFormatError(f"{path}: {error}") from None

    def write(self, folder: Path) -> None:
        (folder / META_FILE).write_text(self.model_dump_json(indent=2) + "\n")
