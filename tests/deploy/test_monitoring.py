"""deploy/monitoring/: the Grafana dashboard and the Prometheus alert rules for the brain's metrics, checked
offline against JSON Schemas of their formats (tests/deploy/schemas/, written from the formats' documentation:
neither check-jsonschema's vendored schemas nor this machine has one for them, nor promtool), and every metric
they query against what a real brain exports."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from brain.service.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RULES = DEPLOY / "ownchat-alerts.yaml"
DASHBOARD = DEPLOY / "ownchat-grafana.json"
# the scrape job's own series, which Prometheus adds
PROMETHEUS_SERIES = {"up"}


def errors(schema_file: str, document: Any) -> list[str]:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def exported_series() -> set[str]:
    """The series names a brain's /metrics shows (the prefix cache's counters included)."""
    metrics = Metrics()
    metrics.watch_prefix_cache(lambda: (0, 0, 0))
    metrics.request_latency.labels("chat").observe(0.1)
    metrics.replies.labels("ok").inc()
    metrics.admission_outcomes.labels("admitted").inc()
    return {sample.name for metric in metrics.registry.collect() for sample in metric.samples}


def queried(expr: str) -> set[str]:
    """The metric names an expression reads (identifiers followed by a selector or a range, or standing alone)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    names = set(re.findall(r"\b(ownchat_[a-z_]+|up)\b", without_strings))
    return names


def test_the_alert_rules_are_a_valid_prometheus_rule_file() -> None:
    assert errors("prometheus-rules.schema.json", rules()) == []
    alerts = [rule["alert"] for group in rules()["groups"] for rule in group["rules"]]
    assert len(alerts) == len(set(alerts)) >= 5


def test_the_grafana_dashboard_is_a_valid_dashboard_model() -> None:
    board = dashboard()
    assert errors("grafana-dashboard.schema.json", board) == []
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    # no two panels overlap on the 24-column grid
    cells = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


@pytest.mark.parametrize(
    "broken",
    [
        lambda doc: doc["groups"][0]["rules"][0].pop("expr"),
        lambda doc: doc["groups"][0]["rules"][0].update({"for": "ten minutes"}),
        lambda doc: doc["groups"][0]["rules"][0].update({"record": "x"}),
        lambda doc: doc["groups"][0].pop("name"),
    ],
)
def test_the_rule_schema_refuses_a_broken_rule_file(broken: Any) -> None:
    doc = copy.deepcopy(rules())
    broken(doc)
    assert errors("prometheus-rules.schema.json", doc) != []


def test_every_metric_they_query_is_one_the_brain_exports() -> None:
    exported = exported_series() | PROMETHEUS_SERIES
    expressions = [rule["expr"] for group in rules()["groups"] for rule in group["rules"]]
    expressions += [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]
    read = set().union(*map(queried, expressions))
    assert read - exported == set(), f"queried but never exported: {sorted(read - exported)}"
    # and the dashboard shows what the issue asks for: requests, first-token time, admission, queue, prefix hits
    for name in ("ownchat_request_seconds_count", "ownchat_time_to_first_token_seconds_bucket",
                 "ownchat_admission_total", "ownchat_queue_depth", "ownchat_prefix_cache_hits_total",
                 "ownchat_background_tasks"):  # fmt: skip
        assert name in read, name
