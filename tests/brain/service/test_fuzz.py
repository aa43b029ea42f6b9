"""Property-based fuzzing of the brain's own OpenAPI document (schemathesis): valid and invalid requests on
every operation give no server error, no status code the document does not list, and no response that
breaks its schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from brain.service.app import create_app
from brain.settings import Settings
from tests.support.brain_server import BrainHandle, running_brain

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 60  # per operation and mode: the whole run stays within a couple of minutes on two cores
# the document the brain serves, made without loading a model (the model loads only at start-up)
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}
# invalid input needs something to be invalid: an operation that takes no parameters and no body has none
TAKES_INPUT = sorted(label for label, op in OPERATIONS.items() if op.path_parameters or op.query or op.body)
CASES = [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)]
CASES += [(label, GenerationMode.NEGATIVE) for label in TAKES_INPUT]


@pytest.fixture(scope="module")
def fuzzed_brain(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[BrainHandle]:
    # a generous rate limit, so that the fuzzer reaches the chat path rather than 429 after 20 requests
    with running_brain(tmp_path_factory.mktemp("fuzz"), tiny_model_dir, limits={"rate_per_minute": 100_000}) as b:
        yield b


def test_the_served_document_is_the_one_fuzzed(fuzzed_brain: BrainHandle) -> None:
    served = httpx.get(f"{fuzzed_brain.url}/openapi.json", headers=fuzzed_brain.headers()).json()
    assert {path for path in served["paths"]} == {path for path in SCHEMA.raw_schema["paths"]}


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label} {mode.value}" for label, mode in CASES])
def test_no_operation_fails_on_any_input(fuzzed_brain: BrainHandle, label: str, mode: GenerationMode) -> None:
    headers = fuzzed_brain.headers()

    @given(case=OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: Any) -> None:
        case.call_and_validate(base_url=fuzzed_brain.url, headers=headers, checks=CHECKS, timeout=60)

    fuzz()
