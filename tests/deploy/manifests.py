"""Reading deploy/ for the tests: compose files (with compose's own YAML tags), Kubernetes manifests, Dockerfiles."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.metadata import distribution
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE_PREFIX = "ownchat/"


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags: ``!reset`` (drop the inherited value) and ``!override`` (replace it)."""


@dataclass
class Reset:
    value: Any


def _tagged(wrap: bool):  # noqa: ANN202
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            value: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)  # type: ignore[arg-type]
        return Reset(value) if wrap else value

    return construct


ComposeLoader.add_constructor("!reset", _tagged(True))
ComposeLoader.add_constructor("!override", _tagged(False))


def load_compose(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=ComposeLoader)  # noqa: S506 (a SafeLoader subclass)


def plain(value: Any) -> Any:
    """The document as compose's schema sees it (a ``!reset`` stands for its own value)."""
    if isinstance(value, Reset):
        return plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def merge_compose(base: Any, override: Any) -> Any:
    """Compose's merge of an override file onto a base file, for the parts these files use."""
    if isinstance(override, Reset):
        return None
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            result = merge_compose(base.get(key), value)
            if result is None and isinstance(value, Reset):
                merged.pop(key, None)
            else:
                merged[key] = result
        return merged
    return plain(override)


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema, as vendored by check-jsonschema (no network needed)."""
    return json.loads((files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json").read_text())


def k8s_files() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def k8s_documents(path: Path | None = None) -> list[dict[str, Any]]:
    paths = [path] if path else k8s_files()
    return [doc for p in paths for doc in yaml.safe_load_all(p.read_text()) if doc]


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in k8s_documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise LookupError(f"no {kind} named {name} in deploy/k8s")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    if "template" in spec and "spec" in spec["template"]:
        return spec["template"]["spec"]
    return None


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return [] if spec is None else spec.get("initContainers", []) + spec.get("containers", [])


def configmap_settings() -> dict[str, Any]:
    return yaml.safe_load(find("ConfigMap", "ownchat-config")["data"]["ownchat.yaml"])


@dataclass
class Instruction:
    cmd: str
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool
    original: str


def dockerfile(path: Path) -> list[Instruction]:
    """Parsed with BuildKit's own parser (the `dockerfile` package)."""
    import dockerfile as parser

    return [
        Instruction(c.cmd.upper(), tuple(c.flags), tuple(c.value), c.json, c.original)
        for c in parser.parse_file(str(path))
    ]


def console_scripts() -> dict[str, str]:
    """The project's console scripts (pyproject's [project.scripts], as installed)."""
    return {e.name: e.value for e in distribution("ownchat").entry_points if e.group == "console_scripts"}


def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolated_variables(text: str) -> dict[str, bool]:
    """Variables that compose interpolates in ``text`` -> whether the reference gives a default."""
    found: dict[str, bool] = {}
    for match in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-)?[^}]*\}", text):
        found[match.group(1)] = found.get(match.group(1), False) or bool(match.group(2))
    return found
