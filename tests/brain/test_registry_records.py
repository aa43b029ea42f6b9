"""Registry records cross from the trainer to every brain: a side of another format refuses them clearly,
and records written before formats were recorded still read as format 1."""

from __future__ import annotations

import json

import pytest

from brain.registry_records import (
    META_FILE,
    RECORD_FORMAT,
    LiveAdapter,
    RecordFormatError,
    RegistryEvent,
    ReloadEvent,
    VersionMeta,
)
from brain.store import Store, keys
from brain.store.client import connect

LIVE = {"version": 3, "name": "community@3", "path": "community/v3", "promoted_at": "2026-11-30T03:00:00+00:00"}


def test_a_record_reads_back_as_written():
    record = LiveAdapter(**LIVE, metrics={"test_ppl": 12.5, "bleu": None})
    assert LiveAdapter.loads(record.dumps()) == record
    event = ReloadEvent(target="community", version=None, action="remove")
    assert ReloadEvent.loads(event.dumps()) == event


def test_a_record_without_a_format_is_of_the_first_layout():
    assert LiveAdapter.loads(json.dumps(LIVE)).version == 3


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        ({**LIVE, "format": RECORD_FORMAT + 1}, "upgrade this side"),
        ({**LIVE, "format": 0}, "upgrade the writer"),
        ({**LIVE, "version": "three"}, "does not fit"),
        ({**LIVE, "dir": "/somewhere"}, "does not fit"),
        ({"action": "promote"}, "does not fit"),
    ],
)
def test_a_record_of_another_layout_is_refused_saying_why(raw, phrase):
    with pytest.raises(RecordFormatError, match=phrase):
        LiveAdapter.loads(json.dumps(raw))
    with pytest.raises(RecordFormatError, match="not JSON"):
        RegistryEvent.loads("{not json")


async def test_a_brain_refuses_a_newer_trainers_record(redis_server):
    store = Store(connect(redis_server.url))
    try:
        await store.r.hset(keys.REGISTRY, "community", json.dumps({**LIVE, "format": RECORD_FORMAT + 1}))
        with pytest.raises(RecordFormatError, match=f"format {RECORD_FORMAT + 1}"):
            await store.registry.records()
    finally:
        await store.close()


META = {"target": "community", "version": 2, "created_at": "2026-11-30T03:00:00+00:00", "base_model": "m"}


def test_a_version_meta_reads_back_as_the_trainer_wrote_it(tmp_path):
    meta = VersionMeta(**META, run="run-1", metrics={"test_ppl": 9.5, "bleu": None}, user_hashes=["a1", "b2"])
    meta.write(tmp_path)
    assert VersionMeta.read(tmp_path) == meta
    # as trainers wrote it before it had a format
    (tmp_path / META_FILE).write_text(json.dumps({**META, "run": "run-0", "user_hash": "c3"}))
    assert VersionMeta.read(tmp_path).user_hash == "c3"


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        (json.dumps({k: v for k, v in META.items() if k != "base_model"}), "base_model"),
        (json.dumps({**META, "version": 0}), "does not fit"),
        ("{half", "not JSON"),
        (json.dumps({**META, "format": RECORD_FORMAT + 1}), "upgrade this side"),
    ],
)
def test_a_damaged_version_meta_is_refused_naming_its_file(tmp_path, text, phrase):
    (tmp_path / META_FILE).write_text(text)
    with pytest.raises(RecordFormatError, match=phrase) as refused:
        VersionMeta.read(tmp_path)
    assert str(tmp_path / META_FILE) in str(refused.value)
